import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileContentStore } from './file-content-store';

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('FileContentStore', () => {
  let dir: string;
  let store: FileContentStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'store-'));
    store = new FileContentStore(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('stores once under a sharded path and reads back', async () => {
    const bytes = Buffer.from('image bytes');
    const hash = sha(bytes);
    expect(await store.put(hash, bytes)).toBe(true);
    expect(await store.put(hash, bytes)).toBe(false);
    expect(store.pathOf(hash)).toBe(join(dir, hash.slice(0, 2), hash.slice(2, 4), hash));
    expect(await store.get(hash)).toEqual(bytes);
    expect(await store.get(sha(Buffer.from('absent')))).toBeUndefined();
  });

  it('concurrent writers of the same image leave one complete file and no temporaries', async () => {
    const bytes = Buffer.alloc(256 * 1024, 7);
    const hash = sha(bytes);
    await Promise.all(Array.from({ length: 8 }, () => store.put(hash, bytes)));
    expect(await store.get(hash)).toEqual(bytes);
    expect(readdirSync(join(dir, hash.slice(0, 2), hash.slice(2, 4)))).toEqual([hash]);
  });

  it('refuses anything that is not a sha256, so no path can be smuggled in', async () => {
    for (const bad of ['../../etc/passwd', 'A'.repeat(64), 'abc', `${'a'.repeat(63)}/`]) {
      expect(() => store.pathOf(bad)).toThrow(/sha256/);
    }
  });
});
