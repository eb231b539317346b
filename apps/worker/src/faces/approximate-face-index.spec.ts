import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusteredFaces, DIMENSIONS } from '../../../../bench/face-identities';
import { ApproximateFaceIndex } from './approximate-face-index';

const D = 32;
/** A unit vector near axis 0, `spread` controlling how far. Deterministic per `i`. */
const nearAxis = (i: number, spread: number) => {
  const v = new Float32Array(D);
  v[0] = 1;
  for (let k = 1; k < D; k++) v[k] = spread * Math.sin(i * 12.9898 + k * 78.233);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
/** A pseudo-random unit vector orthogonal to axis 0, different for each `i` (sin-hash noise). */
const far = (i: number) => {
  const v = new Float32Array(D).map((_, k) => {
    const x = Math.sin((i + 1) * 127.1 + (k + 1) * 311.7) * 43758.5453;
    return x - Math.floor(x) - 0.5;
  });
  v[0] = 0;
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};

describe('ApproximateFaceIndex (usearch HNSW, int8)', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'iiq-ann-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('returns every face above the floor, widening past the first search width, and only those below beforeSeq', () => {
    const index = ApproximateFaceIndex.create(D);
    const seqs: number[] = [];
    const vectors = new Float32Array(400 * D);
    for (let i = 0; i < 400; i++) {
      seqs.push(i + 1);
      vectors.set(i < 300 ? nearAxis(i, 0.05) : far(i), i * D);
    }
    index.add(seqs, vectors);
    const query = nearAxis(1000, 0);
    const { candidates, truncated } = index.searchAbove(query, 0.9, Infinity, 16);
    expect(truncated).toBe(false);
    // HNSW is approximate (its threaded build differs run to run, and a node the graph does not reach is not
    // returned even at k = size): only faces above the floor, and most of them — more than the widest first
    // widths (16, 64, 256), so the search did widen. (Under CPU load the build found as few as 282 of the 300
    // in 900 builds: ≥ 294 failed about 1 run in 100.)
    const found = candidates.map((c) => c.seq);
    expect(found.every((seq) => seq <= 300)).toBe(true);
    expect(new Set(found).size).toBeGreaterThan(256);
    expect(candidates.every((c) => c.similarity >= 0.9)).toBe(true);
    const before101 = index.searchAbove(query, 0.9, 101, 16).candidates.map((c) => c.seq);
    expect(before101.every((seq) => seq <= 100)).toBe(true);
    expect(before101.length).toBeGreaterThanOrEqual(90);
  });

  it('a multi-threaded insert leaves no face unreached: a search asking for every face returns every face', () => {
    // usearch 2.26's concurrent add() left 16 of 10,000 nodes unreached in ten 1,000-face graphs of clustered
    // identities on 2 threads (unum-cloud/USearch#735); add() now relinks them (relinkUnreached). On one core the
    // insert is single-threaded and nothing is left unreached either way.
    let unreached = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const set = clusteredFaces(1000, 10, seed);
      const index = ApproximateFaceIndex.create(DIMENSIONS);
      index.add(Array.from({ length: 1000 }, (_, i) => i + 1), set.vectors);
      const { candidates } = index.searchAbove(set.vectors.subarray(0, DIMENSIONS), -1, Infinity, 1000);
      unreached += 1000 - new Set(candidates.map((c) => c.seq)).size;
      index.release();
    }
    expect(unreached).toBe(0);
  });

  it('scrubs a removed face: a file saved afterwards no longer holds its vector, and a reload keeps the rest', () => {
    const index = ApproximateFaceIndex.create(D);
    const vectors = new Float32Array(50 * D);
    for (let i = 0; i < 50; i++) vectors.set(far(i), i * D);
    index.add(Array.from({ length: 50 }, (_, i) => i + 1), vectors);
    const before = join(dir, 'before.usearch');
    index.save(before);
    const rowOf = (path: string, seqIndex: number) => {
      // The file starts with the int8 vector matrix (rows u32, bytes per row u32): find the row of face `seqIndex`.
      const file = readFileSync(path);
      const rows = file.readUInt32LE(0);
      let best = -1;
      for (let row = 0; row < rows; row++) {
        let dot = 0;
        let norm = 0;
        for (let k = 0; k < D; k++) {
          const value = file.readInt8(8 + row * D + k);
          dot += value * vectors[seqIndex * D + k];
          norm += value * value;
        }
        if (norm > 0) best = Math.max(best, dot / Math.sqrt(norm));
      }
      return best;
    };
    expect(rowOf(before, 7)).toBeGreaterThan(0.99);
    expect(index.remove([8, 999])).toBe(1);
    expect(index.size).toBe(49);
    expect(index.sentinelCount).toBe(1);
    const after = join(dir, 'after.usearch');
    index.save(after);
    expect(rowOf(after, 7)).toBeLessThan(0.9);
    expect(rowOf(after, 8)).toBeGreaterThan(0.99);
    const loaded = ApproximateFaceIndex.load(after, D, index.sentinelCount);
    expect(loaded.size).toBe(49);
    // far(8) is face 9, kept; far(7) was face 8, removed
    expect(loaded.searchAbove(far(8), 0.99, Infinity, 16).candidates.map((c) => c.seq)).toEqual([9]);
    expect(loaded.searchAbove(far(7), 0.99, Infinity, 16).candidates).toEqual([]);
  });

  it('a view of a saved file answers as the index did, cannot change, outlives the deletion of its file, and gives a mutable copy without reading that file', () => {
    const index = ApproximateFaceIndex.create(D);
    const vectors = new Float32Array(60 * D);
    for (let i = 0; i < 60; i++) vectors.set(far(i), i * D);
    index.add(Array.from({ length: 60 }, (_, i) => i + 1), vectors);
    expect(index.remove([5])).toBe(1);
    const path = join(dir, 'viewed.usearch');
    index.save(path);
    const view = ApproximateFaceIndex.view(path, D, index.sentinelCount);
    expect(view.immutable).toBe(true);
    expect(view.size).toBe(59);
    expect(view.has(6)).toBe(true);
    expect(view.has(5)).toBe(false);
    expect(() => view.remove([6])).toThrow(/immutable/);
    expect(() => view.add([100], far(100))).toThrow(/immutable/);
    // An erasure's purge deletes the file: the mapping stays valid until release().
    unlinkSync(path);
    expect(view.searchAbove(far(20), 0.99, Infinity, 16).candidates.map((c) => c.seq)).toEqual([21]);
    const copyPath = join(dir, 'copy.usearch');
    const copy = view.copyMutable(copyPath);
    expect(existsSync(path)).toBe(false);
    expect(copy.immutable).toBe(false);
    expect(copy.size).toBe(59);
    expect(copy.sentinelCount).toBe(1);
    expect(copy.remove([21])).toBe(1);
    copy.add([61], far(61));
    expect(copy.searchAbove(far(20), 0.99, Infinity, 16).candidates).toEqual([]);
    expect(copy.searchAbove(far(61), 0.99, Infinity, 16).candidates.map((c) => c.seq)).toEqual([61]);
    // The view did not change with its copy.
    expect(view.searchAbove(far(20), 0.99, Infinity, 16).candidates.map((c) => c.seq)).toEqual([21]);
    view.release();
    copy.release();
    expect(view.size).toBe(0);
    expect(() => view.searchAbove(far(20), 0.99, Infinity, 16)).toThrow(/after release/);
    expect(() => copy.add([62], far(62))).toThrow(/after release/);
  });

  it('takes a batch after a single face that grew it (settle moves 1 face, then 64): usearch sized its thread slots to the single insert, and the batch threw "Reserve capacity ahead of insertions!" (the faces taken off the tail were lost)', () => {
    const batch = (from: number, count: number) => {
      const vectors = new Float32Array(count * D);
      for (let i = 0; i < count; i++) vectors.set(far(from + i), i * D);
      return { seqs: Array.from({ length: count }, (_, i) => from + i), vectors };
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      const index = ApproximateFaceIndex.create(D);
      try {
        const first = batch(1, 256); // capacity 256
        index.add(first.seqs, first.vectors);
        index.add([257], far(257)); // grows it to 512, reserved for one thread
        const next = batch(258, 200); // fits: no reserve, inserted by every core
        expect(() => index.add(next.seqs, next.vectors)).not.toThrow();
        index.remove([5]); // a sentinel: one more single insert
        const last = batch(458, 40);
        expect(() => index.add(last.seqs, last.vectors)).not.toThrow();
        expect(index.size).toBe(496);
      } finally {
        index.release();
      }
    }
  });
});
