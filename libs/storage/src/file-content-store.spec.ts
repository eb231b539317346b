import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asTenantId, TenantId } from '@app/contracts';
import { FileContentStore, NOTE_MAX_BYTES } from './file-content-store';

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const alice = asTenantId('alice');
const bob = asTenantId('bob');

describe('FileContentStore', () => {
  let dir: string;
  let store: FileContentStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'store-'));
    store = new FileContentStore(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('stores once per tenant under a sharded path and reads back', async () => {
    const bytes = Buffer.from('image bytes');
    const hash = sha(bytes);
    expect(await store.put(alice, hash, bytes)).toBe(true);
    expect(await store.put(alice, hash, bytes)).toBe(false);
    expect(store.pathOf(alice, hash)).toBe(join(dir, 'alice', hash.slice(0, 2), hash.slice(2, 4), hash));
    expect(await store.get(alice, hash)).toEqual(bytes);
    expect(await store.get(alice, sha(Buffer.from('absent')))).toBeUndefined();
  });

  it('notes the models asked of an image beside it, once each, per tenant; removing the copy removes the note and leaves no folder', async () => {
    const bytes = Buffer.from('analysed photo');
    const hash = sha(bytes);
    await store.put(alice, hash, bytes);
    expect(await store.notedModels(alice, hash)).toEqual([]);
    await store.noteModels(alice, hash, ['yunet', 'mobilenet_v2']);
    await Promise.all([store.noteModels(alice, hash, ['mobilenet_v2', 'yolox_nano']), store.noteModels(alice, hash, ['squeezenet1_1'])]);
    await store.noteModels(alice, hash, ['yunet', '../../escape', 'two\nlines']);
    expect(await store.notedModels(alice, hash)).toEqual(['mobilenet_v2', 'squeezenet1_1', 'yolox_nano', 'yunet']);
    expect(await store.notedModels(bob, hash)).toEqual([]);
    expect(await store.remove(alice, hash)).toBe(true);
    expect(await store.notedModels(alice, hash)).toEqual([]);
    expect(readdirSync(join(dir, 'alice'))).not.toContain(hash.slice(0, 2));
  });

  it('reads a note only up to NOTE_MAX_BYTES: a huge or corrupt note neither fails nor fills memory', async () => {
    const bytes = Buffer.from('photo with a damaged note');
    const hash = sha(bytes);
    await store.put(alice, hash, bytes);
    const note = `${store.pathOf(alice, hash)}.models`;
    writeFileSync(note, 'yunet\nmobilenet_v2\n');
    // 700 MiB, sparse: read whole, it is past V8's longest string (the read threw RangeError, after 700 MiB of Buffer).
    truncateSync(note, 700 * 1024 * 1024);
    expect(await store.notedModels(alice, hash)).toEqual(['mobilenet_v2', 'yunet']);
    await store.noteModels(alice, hash, ['yunet']);
    // A name cut by the bound is not read as a shorter name.
    writeFileSync(note, `${'x'.repeat(NOTE_MAX_BYTES - 3)}\nyolox_nano\n`);
    expect(await store.notedModels(alice, hash)).toEqual([]);
  });

  it("keeps tenants apart: one tenant's copy is neither visible to nor removed with another's", async () => {
    const bytes = Buffer.from('the same photo');
    const hash = sha(bytes);
    await store.put(alice, hash, bytes);
    expect(await store.has(bob, hash)).toBe(false);
    expect(await store.get(bob, hash)).toBeUndefined();
    expect(await store.put(bob, hash, bytes)).toBe(true);
    expect(await store.remove(alice, hash)).toBe(true);
    expect(await store.remove(alice, hash)).toBe(false);
    expect(existsSync(store.pathOf(alice, hash))).toBe(false);
    // No empty shard folders left to name the hash's first bytes.
    expect(readdirSync(join(dir, 'alice')).filter((name) => name !== '.incoming')).toEqual([]);
    expect(await store.get(bob, hash)).toEqual(bytes);
  });

  it('concurrent writers of the same image leave one complete file and no temporaries', async () => {
    const bytes = Buffer.alloc(256 * 1024, 7);
    const hash = sha(bytes);
    await Promise.all(Array.from({ length: 8 }, () => store.put(alice, hash, bytes)));
    expect(await store.get(alice, hash)).toEqual(bytes);
    expect(readdirSync(join(dir, 'alice', hash.slice(0, 2), hash.slice(2, 4)))).toEqual([hash]);
    expect(readdirSync(join(dir, 'alice', '.incoming'))).toEqual([]);
  });

  it('adopts a staged file as the copy, once; a second staged copy of the same image is dropped', async () => {
    const bytes = Buffer.from('streamed photo');
    const hash = sha(bytes);
    const first = await store.stagingPath(alice);
    const second = await store.stagingPath(alice);
    writeFileSync(first, bytes);
    writeFileSync(second, bytes);
    expect(await store.adopt(alice, hash, first)).toBe(true);
    expect(await store.adopt(alice, hash, second)).toBe(false);
    expect(await store.get(alice, hash)).toEqual(bytes);
    expect(readdirSync(join(dir, 'alice', '.incoming'))).toEqual([]);
  });

  it('refuses anything that is not a sha256 or a tenant name, so no path can be smuggled in', async () => {
    for (const bad of ['../../etc/passwd', 'A'.repeat(64), 'abc', `${'a'.repeat(63)}/`]) {
      expect(() => store.pathOf(alice, bad)).toThrow(/sha256/);
    }
    for (const badTenant of ['..', '.', 'a/b', '', '../x']) {
      expect(() => store.pathOf(badTenant as TenantId, sha(Buffer.from('x')))).toThrow(/tenant/);
    }
  });
});
