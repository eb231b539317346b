import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { asTenantId, TenantId } from '@app/contracts';
import { assertSha256, ContentStore } from './content-store';

/**
 * Images on a local or shared disk: `<root>/<tenant>/<ab>/<cd>/<hash>`. Written to a temporary name in the
 * same folder and renamed, so a reader never sees a partial file and two writers of the same image both succeed.
 */
export class FileContentStore implements ContentStore {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** The file of a tenant's image. Throws on a hash that is not sha256 hex or a tenant name that is not valid. */
  pathOf(tenant: TenantId, hash: string): string {
    assertSha256(hash);
    return join(this.root, asTenantId(tenant), hash.slice(0, 2), hash.slice(2, 4), hash);
  }

  async put(tenant: TenantId, hash: string, bytes: Buffer): Promise<boolean> {
    const path = this.pathOf(tenant, hash);
    if (await this.has(tenant, hash)) return false;
    await mkdir(join(path, '..'), { recursive: true });
    const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(temporary, bytes, { flag: 'wx' });
      await rename(temporary, path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    return true;
  }

  async get(tenant: TenantId, hash: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.pathOf(tenant, hash));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async has(tenant: TenantId, hash: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(tenant, hash))).isFile();
    } catch {
      return false;
    }
  }

  async remove(tenant: TenantId, hash: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(tenant, hash));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }
}
