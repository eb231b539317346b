import type { FaceLogEntry } from '@app/storage';
import { clusteredFaces, DIMENSIONS } from '../../../../bench/face-identities';
import { ApproximateFaceIndex } from './approximate-face-index';
import { CompressedFaceIndex } from './compressed-face-index';
import { buildExact, catchUp, needsExactBuild, PQ_REBUILD_SHARE } from './settled-snapshot';
import { TenantFaces } from './tenant-faces';

const withBinding = CompressedFaceIndex.available || process.env.CI === 'true' ? describe : describe.skip;

/** A tenant's log in memory, read a page at a time as FaceStore.readLog reads Redis (100 entries a page here). */
function memoryLog(count: number) {
  const set = clusteredFaces(count + 100, 10, 8);
  const entries: FaceLogEntry[] = [];
  let seq = 0;
  const add = () => {
    const row = seq;
    entries.push({ op: 'add', seq: ++seq, faceId: `f${row}`, imageHash: `img${row}`, embedding: set.vectors.slice(row * DIMENSIONS, (row + 1) * DIMENSIONS) });
  };
  for (let i = 0; i < count; i++) add();
  return {
    add,
    remove(seqs: number[]) {
      for (const removed of seqs) entries.splice(entries.findIndex((e) => e.seq === removed), 1);
      entries.push({ op: 'del', seq: ++seq, removedSeqs: seqs });
    },
    get head() {
      return seq;
    },
    read: async (after: number) => entries.filter((entry) => entry.seq > after).slice(0, 100),
  };
}

withBinding('PQ snapshots built from exact vectors (buildExact + catchUp)', () => {
  it('builds every live face of the log up to the view, then catches up with tombstones and faces indexed since, once each', async () => {
    const log = memoryLog(600);
    log.remove([7]); // before the build: its entry is gone, it is never built
    const view = { dimensions: DIMENSIONS, indexedUpTo: 601, lastSeq: 601 };
    const build = (await buildExact(view, log.read))!;
    try {
      expect(build.index.size).toBe(599);
      expect([build.index.has(7), build.index.has(8), build.coveredUpTo, build.pqLinked]).toEqual([false, true, 601, 0]);

      // While it was built: faces 5 and 300 erased, 50 faces added, of which the view has indexed up to 642.
      log.remove([5, 300]);
      for (let i = 0; i < 50; i++) log.add();
      await catchUp(build, { dimensions: DIMENSIONS, indexedUpTo: 642, lastSeq: log.head } as TenantFaces, log.read);
      expect([build.index.has(5), build.index.has(300), build.index.has(642), build.index.has(643)]).toEqual([false, false, true, false]);
      expect([build.index.size, build.pqLinked, build.coveredUpTo]).toEqual([597 + 40, 40, 642]);

      // Under the lock: the rest, and a later erasure; nothing applied twice.
      log.remove([642]);
      await catchUp(build, { dimensions: DIMENSIONS, indexedUpTo: 652, lastSeq: log.head } as TenantFaces, log.read);
      expect([build.index.has(642), build.index.has(652), build.index.size, build.pqLinked]).toEqual([false, true, 636 + 10, 50]);
    } finally {
      build.index.release();
    }
  });

  it('keeps nothing when fewer live faces than asked for remain', async () => {
    const log = memoryLog(300);
    expect(await buildExact({ dimensions: DIMENSIONS, indexedUpTo: 300, lastSeq: 300 }, log.read, 301)).toBeUndefined();
  });

  it('asks for an exact build without a PQ base, and once PQ-linked faces pass PQ_REBUILD_SHARE of the base', async () => {
    expect(needsExactBuild(new TenantFaces(DIMENSIONS))).toBe(true);
    const int8 = ApproximateFaceIndex.create(DIMENSIONS);
    const file = { path: '', indexedUpTo: 100, appliedUpTo: 100, sentinels: 0, format: 'usearch' as const, pqLinked: 0 };
    expect(needsExactBuild(TenantFaces.fromSnapshot(int8, file))).toBe(true);
    const log = memoryLog(400);
    const build = (await buildExact({ dimensions: DIMENSIONS, indexedUpTo: 400, lastSeq: 400 }, log.read))!;
    try {
      const limit = Math.floor(PQ_REBUILD_SHARE * 400);
      const pq = TenantFaces.fromSnapshot(build.index, { ...file, format: 'faiss', indexedUpTo: 400, appliedUpTo: 400, pqLinked: limit - 5 });
      for (let seq = 401; seq <= 405; seq++) pq.deltaSeqs!.add(seq);
      expect(needsExactBuild(pq)).toBe(false);
      pq.deltaSeqs!.add(406);
      expect(needsExactBuild(pq)).toBe(true);
    } finally {
      build.index.release();
      int8.release();
    }
  });
});
