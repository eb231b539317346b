import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { asTenantId, TenantId } from '@app/contracts';
import { assertSha256, ContentStore } from './content-store';

/**
 * Images on a local or shared disk: `<root>/<tenant>/<ab>/<cd>/<hash>`. Written to a staging file in the
 * tenant's folder and renamed, so a reader never sees a partial file and two writers of the same image both
 * succeed.
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
    if (await this.has(tenant, hash)) return false;
    const staged = await this.stagingPath(tenant);
    try {
      await writeFile(staged, bytes, { flag: 'wx' });
    } catch (error) {
      await unlink(staged).catch(() => undefined);
      throw error;
    }
    return this.adopt(tenant, hash, staged);
  }

  /** `<root>/<tenant>/.incoming/<pid>.<random>.tmp`: inside the tenant's folder, on the store's volume. */
  async stagingPath(tenant: TenantId): Promise<string> {
    const folder = join(this.root, asTenantId(tenant), '.incoming');
    await mkdir(folder, { recursive: true });
    return join(folder, `${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
  }

  async adopt(tenant: TenantId, hash: string, stagedPath: string): Promise<boolean> {
    const path = this.pathOf(tenant, hash);
    try {
      if (await this.has(tenant, hash)) return false;
      // Twice: a remove of another image may take an empty shard folder away between mkdir and rename.
      for (let attempt = 1; ; attempt++) {
        await mkdir(dirname(path), { recursive: true });
        try {
          await rename(stagedPath, path);
          return true;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 2) throw error;
        }
      }
    } finally {
      await unlink(stagedPath).catch(() => undefined);
    }
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

  /** Deletes the tenant's copy, and its shard folders once empty (their names are the hash's first 4 hex). */
  async remove(tenant: TenantId, hash: string): Promise<boolean> {
    const path = this.pathOf(tenant, hash);
    try {
      await unlink(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    for (const folder of [dirname(path), dirname(dirname(path))]) {
      // Not empty (another image), or gone (a concurrent remove): either way, leave it.
      if (!(await rmdir(folder).then(() => true, () => false))) break;
    }
    return true;
  }
}
