import type { FaceLogEntry } from '@app/storage';
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
