import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, open, readFile, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { asTenantId, TenantId } from '@app/contracts';
import { assertSha256, ContentStore } from './content-store';

const MODELS_SUFFIX = '.models';
/** A model name as the catalog names them; anything else in a note (a torn or foreign line) is ignored. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/**
 * Most bytes of a note read (64 KiB: some 600 names of the longest MODEL_NAME, where a catalog has a dozen). The
 * note is read on every upload of the image and on its recovery: a note grown or damaged on disk (by hand, a
 * filesystem fault) must cost neither its size in memory nor, past V8's longest string, a RangeError (a 500 on
 * every upload of that image, and no recovery).
 */
export const NOTE_MAX_BYTES = 64 * 1024;

/**
 * Images on a local or shared disk: `<root>/<tenant>/<ab>/<cd>/<hash>`. Written to a staging file in the
 * tenant's folder and renamed, so a reader never sees a partial file and two writers of the same image both
 * succeed. The models asked of an image are noted in `<hash>.models` beside it, one name per line, appended
 * (O_APPEND writes of a few bytes land whole, so two concurrent notes never tear each other).
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

  async noteModels(tenant: TenantId, hash: string, models: string[]): Promise<void> {
    const noted = new Set(await this.notedModels(tenant, hash));
    const added = [...new Set(models)].filter((model) => !noted.has(model) && MODEL_NAME.test(model));
    if (added.length === 0) return;
    const path = `${this.pathOf(tenant, hash)}${MODELS_SUFFIX}`;
    await mkdir(dirname(path), { recursive: true });
    await appendFile(path, added.map((model) => `${model}\n`).join(''));
  }

  /** Reads the first NOTE_MAX_BYTES of the note; a line the bound cuts is left out (never read as a shorter name). */
  async notedModels(tenant: TenantId, hash: string): Promise<string[]> {
    const file = await open(`${this.pathOf(tenant, hash)}${MODELS_SUFFIX}`, 'r').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (!file) return [];
    let text: string;
    try {
      const buffer = Buffer.alloc(NOTE_MAX_BYTES);
      const { bytesRead } = await file.read(buffer, 0, NOTE_MAX_BYTES, 0);
      text = buffer.toString('utf8', 0, bytesRead);
      if (bytesRead === NOTE_MAX_BYTES) text = text.slice(0, text.lastIndexOf('\n') + 1);
    } finally {
      await file.close();
    }
    return [...new Set(text.split('\n').filter((line) => MODEL_NAME.test(line)))].sort();
  }

  /** Deletes the tenant's copy and its note, and its shard folders once empty (their names are the hash's first 4 hex). */
  async remove(tenant: TenantId, hash: string): Promise<boolean> {
    const path = this.pathOf(tenant, hash);
    await unlink(`${path}${MODELS_SUFFIX}`).catch(() => undefined);
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
