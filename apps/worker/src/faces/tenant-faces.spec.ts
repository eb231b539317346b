import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FaceLogEntry } from '@app/storage';
import { ApproximateFaceIndex } from './approximate-face-index';
import { copyBase, writeSettled } from './settled-snapshot';
import { TenantFaces } from './tenant-faces';

type AddEntry = Extract<FaceLogEntry, { op: 'add' }>;

/** Unit vectors in 8 dimensions: `near(base, t)` has cosine ≈ cos(t) with `axis(base)`. */
const D = 8;
const unit = (values: number[]) => {
  const n = Math.hypot(...values);
  return Float32Array.from(values.map((x) => x / n));
};
const axis = (i: number) => unit(Array.from({ length: D }, (_, k) => (k === i ? 1 : 0)));
const near = (i: number, angle: number) => unit(Array.from({ length: D }, (_, k) => (k === i ? Math.cos(angle) : k === (i + 1) % D ? Math.sin(angle) : 0)));

/** A tenant's log kept in memory, read the way the worker reads Redis (entries by sequence number). */
class Log {
  readonly entries: FaceLogEntry[] = [];
  private seq = 0;

  add(faceId: string, imageHash: string, embedding: Float32Array): AddEntry {
    const entry: AddEntry = { op: 'add', seq: ++this.seq, faceId, imageHash, embedding };
    this.entries.push(entry);
    return entry;
  }

  /** As the forget script does: the entries go, one tombstone names their sequence numbers. */
  remove(seqs: number[]): FaceLogEntry {
    for (const seq of seqs) this.entries.splice(this.entries.findIndex((e) => e.seq === seq), 1);
    const tombstone: FaceLogEntry = { op: 'del', seq: ++this.seq, removedSeqs: seqs };
    this.entries.push(tombstone);
    return tombstone;
  }

  after(seq: number): FaceLogEntry[] {
    return this.entries.filter((entry) => entry.seq > seq);
  }

  readFaces = async (seqs: number[]) => {
    const found = new Map<number, AddEntry>();
    for (const entry of this.entries) if (entry.op === 'add' && seqs.includes(entry.seq)) found.set(entry.seq, entry);
    return found;
  };
}

const policy = { minFaces: 4, settleMs: 1000, batch: 100 };

describe('TenantFaces: exact tail + approximate index', () => {
  it('a small tenant stays on the exact scan: no index below minFaces', () => {
    const faces = new TenantFaces(D);
    const log = new Log();
    for (let i = 0; i < 3; i++) log.add(`f${i}`, `img${i}`, axis(i));
    faces.apply(log.after(0), 0);
    expect(faces.settle(1_000_000, policy)).toBe(0);
    expect(faces.settled).toBeUndefined();
    expect(faces.tail.size).toBe(3);
  });

  it('finds a face in the tail and one in the index for the same query, with exact similarities', async () => {
    const faces = new TenantFaces(D);
    const log = new Log();
    const old = log.add('old', 'imgOld', near(0, 0.3));
    for (let i = 1; i < 6; i++) log.add(`filler${i}`, `imgF${i}`, axis(i));
    faces.apply(log.after(0), 0);
    // everything seen at t=0 is settled by t=5000
    expect(faces.settle(5000, policy)).toBe(6);
    expect(faces.settled!.size).toBe(6);
    expect(faces.tail.size).toBe(0);
    const recent = log.add('recent', 'imgRecent', near(0, 0.4));
    faces.apply(log.after(faces.lastSeq), 5000);
    expect(faces.settle(5500, policy)).toBe(0); // seen 500 ms ago: stays in the tail
    expect(faces.tail.size).toBe(1);

    const query = axis(0);
    const found = await faces.match(query, Infinity, 'imgQuery', 0.8, log.readFaces);
    expect(found.matches.map((m) => m.faceId).sort()).toEqual(['old', 'recent']);
    const byId = Object.fromEntries(found.matches.map((m) => [m.faceId, m.similarity]));
    expect(byId.old).toBeCloseTo(Math.cos(0.3), 5); // exact, from the float32 log entry, not int8
    expect(byId.recent).toBeCloseTo(Math.cos(0.4), 5);
    expect(found.checked).toBeGreaterThanOrEqual(1);
    // only faces numbered below the query's own, and never the query's own image
    expect((await faces.match(query, recent.seq, 'imgQuery', 0.8, log.readFaces)).matches.map((m) => m.faceId)).toEqual(['old']);
    expect((await faces.match(query, Infinity, 'imgOld', 0.8, log.readFaces)).matches.map((m) => m.faceId)).toEqual(['recent']);
    expect(old.seq).toBeLessThan(recent.seq);
  });

  it('deleted faces never return, from the index or the tail, even if the log still had them', async () => {
    const faces = new TenantFaces(D);
    const log = new Log();
    const settled = log.add('settled', 'imgA', near(2, 0.1));
    for (let i = 0; i < 5; i++) log.add(`filler${i}`, `imgF${i}`, axis((i + 4) % D));
    faces.apply(log.after(0), 0);
    faces.settle(10_000, policy);
    const recent = log.add('recent', 'imgB', near(2, 0.2));
    faces.apply(log.after(faces.lastSeq), 10_000);
    expect(faces.settled!.size).toBe(6);
    expect(faces.tail.size).toBe(1);

    const tombstone = log.remove([settled.seq, recent.seq]);
    faces.apply([tombstone], 10_000);
    expect(faces.settled!.size).toBe(5);
    expect(faces.settled!.sentinelCount).toBe(1);
    expect(faces.tail.size).toBe(0);
    // A reader that still returns the removed entries (a stale copy of the log): the index itself must not offer them.
    const stale = new Map<number, AddEntry>([[settled.seq, settled], [recent.seq, recent]]);
    const found = await faces.match(axis(2), Infinity, 'q', 0.5, async (seqs) => new Map([...stale].filter(([seq]) => seqs.includes(seq))));
    expect(found.matches).toEqual([]);
    expect(found.checked).toBe(0);
  });

  it('a face removed from the log between the index search and the exact check is left out', async () => {
    const faces = new TenantFaces(D);
    const log = new Log();
    const gone = log.add('gone', 'imgA', near(3, 0.1));
    for (let i = 0; i < 5; i++) log.add(`filler${i}`, `imgF${i}`, axis((i + 5) % D));
    faces.apply(log.after(0), 0);
    faces.settle(10_000, policy);
    log.remove([gone.seq]); // not yet applied by this worker
    const found = await faces.match(axis(3), Infinity, 'q', 0.5, log.readFaces);
    expect(found.checked).toBe(1);
    expect(found.matches).toEqual([]);
  });

  it('keeps at most minFaces in the tail once indexed, oldest first, whatever their age', () => {
    const faces = new TenantFaces(D);
    const log = new Log();
    for (let i = 0; i < 10; i++) log.add(`f${i}`, `img${i}`, near(i % D, 0.01 * i));
    faces.apply(log.after(0), 0);
    expect(faces.settle(0, policy)).toBe(6);
    expect(faces.tail.size).toBe(4);
    expect(faces.indexedUpTo).toBe(6);
    expect(faces.size).toBe(10);
  });
});

describe('TenantFaces on a viewed snapshot: base + delta + tail', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'iiq-tenant-faces-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** 12 faces settled and saved as a snapshot, viewed by a fresh TenantFaces (as a starting worker does). */
  const snapshotOf = async (log: Log, name: string) => {
    const builder = new TenantFaces(D);
    builder.apply(log.after(0), 0);
    builder.settle(10_000, { ...policy, minFaces: 0 });
    const path = join(dir, name);
    const { content } = await writeSettled(builder, path, log.readFaces);
    builder.release();
    return TenantFaces.fromSnapshot(ApproximateFaceIndex.view(path, D, content.sentinels), { path, ...content });
  };
  const ids = async (faces: TenantFaces, query: Float32Array, read: Log['readFaces']) => (await faces.match(query, Infinity, 'q', 0.8, read)).matches.map((m) => m.faceId).sort();

  it('finds a face in each of base, delta and tail with exact similarities; removed faces of each never return, even from a stale log', async () => {
    const log = new Log();
    const inBase = log.add('base', 'imgBase', near(1, 0.2));
    for (let i = 0; i < 11; i++) log.add(`filler${i}`, `imgF${i}`, axis(4 + (i % 4)));
    const faces = await snapshotOf(log, 'merge.usearch');
    expect((faces.base as ApproximateFaceIndex).immutable).toBe(true);
    expect([faces.indexedUpTo, faces.lastSeq, faces.indexedSize]).toEqual([12, 12, 12]);

    const inDelta = log.add('delta', 'imgDelta', near(1, 0.3));
    faces.apply(log.after(faces.lastSeq), 0);
    expect(faces.settle(5000, policy)).toBe(1);
    const inTail = log.add('tail', 'imgTail', near(1, 0.4));
    faces.apply(log.after(faces.lastSeq), 5000);
    expect([faces.base!.size, faces.settled!.size, faces.tail.size]).toEqual([12, 1, 1]);
    expect([...faces.deltaSeqs!]).toEqual([inDelta.seq]);

    const found = await faces.match(axis(1), Infinity, 'q', 0.8, log.readFaces);
    const byId = Object.fromEntries(found.matches.map((m) => [m.faceId, m.similarity]));
    expect(Object.keys(byId).sort()).toEqual(['base', 'delta', 'tail']);
    expect(byId.base).toBeCloseTo(Math.cos(0.2), 5);
    expect(byId.delta).toBeCloseTo(Math.cos(0.3), 5);
    expect(byId.tail).toBeCloseTo(Math.cos(0.4), 5);
    expect(found.checked).toBe(2);

    const stale = new Map<number, AddEntry>([inBase, inDelta, inTail].map((entry) => [entry.seq, entry]));
    const staleReader = async (seqs: number[]) => new Map([...stale].filter(([seq]) => seqs.includes(seq)));
    faces.apply([log.remove([inBase.seq, inDelta.seq, inTail.seq])], 6000);
    expect([...faces.baseRemoved]).toEqual([inBase.seq]);
    expect([faces.base!.size, faces.settled!.size, faces.tail.size, faces.indexedSize]).toEqual([12, 0, 0, 11]);
    expect(await ids(faces, axis(1), staleReader)).toEqual([]);
    expect(await ids(faces, axis(1), log.readFaces)).toEqual([]);
    // A tombstone naming a face the base never held (removed before the snapshot) adds nothing to the filter.
    faces.apply([{ op: 'del', seq: log.entries.length + 100, removedSeqs: [1000] }], 6000);
    expect(faces.baseRemoved.size).toBe(1);
    faces.release();
  });

  it('a snapshot written from base + delta (the next one) gives the same answers when viewed (a swap), and no removed face is in it, also when the copy was made before the last changes', async () => {
    const log = new Log();
    const gone = log.add('gone', 'imgGone', near(2, 0.1));
    const kept = log.add('kept', 'imgKept', near(2, 0.25));
    for (let i = 0; i < 10; i++) log.add(`filler${i}`, `imgF${i}`, axis(4 + (i % 4)));
    const faces = await snapshotOf(log, 'first.usearch');
    const later = log.add('later', 'imgLater', near(2, 0.35));
    const goneLater = log.add('goneLater', 'imgGoneLater', near(2, 0.15));
    faces.apply(log.after(faces.lastSeq), 0);
    faces.settle(5000, policy);
    // The copy is made outside the snapshot lock; then a base face and a delta face are removed, one more settles.
    const copy = await copyBase(faces, join(dir, 'copy.tmp'), log.readFaces);
    expect([copy.index.size, copy.delta.size, copy.removed.size]).toEqual([14, 2, 0]);
    faces.apply([log.remove([gone.seq, goneLater.seq])], 5000);
    const last = log.add('last', 'imgLast', near(2, 0.3));
    faces.apply(log.after(faces.lastSeq), 5000);
    faces.settle(10_000, policy);
    expect([faces.base!.size, faces.baseRemoved.size, faces.settled!.size, faces.tail.size]).toEqual([12, 1, 2, 0]);

    const path = join(dir, 'second.usearch');
    const written = await writeSettled(faces, path, log.readFaces, copy);
    copy.index.release();
    expect(written.content).toEqual({ indexedUpTo: last.seq, appliedUpTo: last.seq, sentinels: 2, format: 'usearch', pqLinked: 0 });
    expect(written.copyPrivateBytes).toEqual(expect.any(Number));
    const swapped = TenantFaces.fromSnapshot(ApproximateFaceIndex.view(path, D, written.content.sentinels), { path, ...written.content });
    swapped.apply(log.after(written.content.indexedUpTo), 10_000);
    expect([swapped.base!.size, swapped.baseRemoved.size, swapped.settled, swapped.tail.size]).toEqual([13, 0, undefined, 0]);
    for (const query of [axis(2), near(2, 0.2), axis(5)]) expect(await ids(swapped, query, log.readFaces)).toEqual(await ids(faces, query, log.readFaces));
    expect(await ids(swapped, axis(2), log.readFaces)).toEqual(['kept', 'last', 'later']);
    // The removed faces are not in the new file at all, even for a reader that still has their entries.
    expect(swapped.base!.has(gone.seq)).toBe(false);
    expect(swapped.base!.has(goneLater.seq)).toBe(false);
    expect([kept, later, last].every((face) => swapped.base!.has(face.seq))).toBe(true);
    // Made in one go under the lock (no copy prepared), the same faces.
    const direct = join(dir, 'direct.usearch');
    // (one sentinel fewer: goneLater was never in this copy)
    expect((await writeSettled(faces, direct, log.readFaces)).content).toEqual({ ...written.content, sentinels: 1 });
    const viewed = ApproximateFaceIndex.view(direct, D, 1);
    expect([viewed.size, viewed.has(gone.seq), viewed.has(goneLater.seq), viewed.has(last.seq)]).toEqual([13, false, false, true]);
    viewed.release();
    faces.release();
    swapped.release();
  });

  describe('regressed: a read of the log showing that Redis lost what this view applied', () => {
    const applied = () => {
      const faces = new TenantFaces(D);
      const log = new Log();
      for (let i = 0; i < 3; i++) log.add(`f${i}`, `img${i}`, axis(i));
      log.remove([2]);
      faces.apply(log.after(0), 0);
      return { faces, log };
    };

    it('the counter below the cursor', () => {
      const { faces } = applied();
      expect(faces.lastSeq).toBe(4);
      expect(faces.regressed({ entries: [], head: 3 })).toBe(true);
      expect(faces.regressed({ entries: [], head: 4 })).toBe(false);
    });

    it('the entry applied last given out again (the counter passed the cursor since): a tombstone or a face that is not the one applied', () => {
      const { faces, log } = applied();
      expect(faces.lastEntry).toEqual({ seq: 4, key: 'del:2' });
      expect(faces.regressed({ entries: [], head: 9, checked: log.entries[log.entries.length - 1] })).toBe(false);
      expect(faces.regressed({ entries: [], head: 9, checked: { op: 'del', seq: 4, removedSeqs: [1] } })).toBe(true);
      expect(faces.regressed({ entries: [], head: 9, checked: { op: 'add', seq: 4, faceId: 'other', imageHash: 'x', embedding: axis(0) } })).toBe(true);
    });

    it('the entry applied last gone is no sign (erasure deletes entries), nor is a read that did not ask for it', () => {
      const faces = new TenantFaces(D);
      const log = new Log();
      const added = log.add('f0', 'img0', axis(0));
      faces.apply([added], 0);
      expect(faces.lastEntry).toEqual({ seq: 1, key: 'add:f0' });
      expect(faces.regressed({ entries: [], head: 2, checked: null })).toBe(false);
      expect(faces.regressed({ entries: [], head: 2 })).toBe(false);
      // Replaying an older add (seq at or below the cursor) does not move what was applied last.
      faces.apply([{ ...added, faceId: 'again' }], 0);
      expect(faces.lastEntry).toEqual({ seq: 1, key: 'add:f0' });
    });
  });
});
