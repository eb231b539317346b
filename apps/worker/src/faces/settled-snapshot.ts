import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { FaceLogEntry } from '@app/storage';
import type { SnapshotContent } from '@app/storage/face-snapshots';
import { ApproximateFaceIndex } from './approximate-face-index';
import { CompressedFaceIndex } from './compressed-face-index';
import { residentMemory } from './process-memory';
import { BaseIndex, SettledFaceReader, TenantFaces } from './tenant-faces';

/** Reads the tenant's log after `afterSeq`, oldest first, one page (FaceStore.readLog's entries). */
export type LogPageReader = (afterSeq: number) => Promise<FaceLogEntry[]>;

/**
 * FACE_INDEX_STORAGE as resolved at start: `pq` writes FAISS snapshots (CompressedFaceIndex), `int8` usearch
 * ones (ApproximateFaceIndex).
 */
export type FaceIndexStorage = 'pq' | 'int8';

/**
 * A PQ snapshot is built again from exact vectors (buildExact) once the faces linked on PQ distances (added to
 * a copy of the base, snapshot after snapshot), together with the removed faces it still holds as scrubbed nodes,
 * would pass this share of its faces. A graph built wholly on PQ distances (FAISS's own IndexHNSWPQ) found 0.9685
 * of the pairs at width 512 at 10⁶ faces against 0.99+ for links on exact distances (README "Face matching at
 * scale"); how recall falls between the two was not measured, so the share is a cautious choice, not a fitted
 * one. Rebuilding when the base has grown by a quarter costs, summed over a tenant's growth, about four exact
 * builds of its final size.
 */
export const PQ_REBUILD_SHARE = 0.25;

/** Faces per exact-build step (one thread-pool trip each; the event loop runs between them). */
const EXACT_BATCH = 2048;

/**
 * Faces read from the log and inserted into the copy per step: one pipelined read and, at 10⁶ faces, about
 * 0.4 s of usearch inserts on 2 busy cores (about 0.8 ms a face with 256 candidates while inserting, bench),
 * then the event loop runs again.
 */
const COPY_BATCH = 512;

/** A mutable copy of a tenant's viewed base with its removed faces scrubbed and its delta added, as of `removed`/`delta`. */
export interface BaseCopy {
  index: BaseIndex;
  /** The base it copies (a copy of another base is useless). */
  base: BaseIndex;
  /** Faces of a PQ copy linked on PQ distances (the base file's, plus those added to the copy). */
  pqLinked: number;
  removed: Set<number>;
  delta: Set<number>;
  /** Private memory it took (RssAnon after it was filled minus before it was made, bytes). */
  privateBytes: number;
}

export interface WrittenSettled {
  content: SnapshotContent;
  /** The copy's private memory (BaseCopy.privateBytes); absent when there was no base. */
  copyPrivateBytes?: number;
}

/**
 * Phase 1 of a snapshot from a viewed base, outside the snapshot lock (it takes seconds: every delta face is
 * inserted again, ~0.8 ms each at 10⁶ faces): a mutable copy of the base (ApproximateFaceIndex.copyMutable
 * through `tempPath`, deleted by the caller; it never reads the base's own file, which an erasure may have
 * deleted), the base's removed faces scrubbed (sentinels), the delta's faces added from their float32 log
 * entries (a face gone from the log meanwhile is left out). Transient cost: the whole index in private memory
 * (about 390–500 bytes per face, measured) until the caller releases `index`.
 */
export async function copyBase(faces: TenantFaces, tempPath: string, readSettled: SettledFaceReader): Promise<BaseCopy> {
  if (!faces.base) throw new Error('no base to copy');
  const base = faces.base;
  const removed = new Set(faces.baseRemoved);
  const delta = new Set(faces.deltaSeqs);
  const before = residentMemory().private;
  const index = base instanceof CompressedFaceIndex ? await base.copy(tempPath) : base.copyMutable(tempPath);
  let added = 0;
  try {
    index.remove(removed);
    added = await addFromLog(index, [...delta], faces.dimensions, readSettled);
  } catch (error) {
    index.release();
    throw error;
  }
  const pqLinked = base instanceof CompressedFaceIndex ? (faces.baseFile?.pqLinked ?? 0) + added : 0;
  return { index, base, removed, delta, pqLinked, privateBytes: residentMemory().private - before };
}

/**
 * Phase 2, under the snapshot lock, after the caller synced the tenant to the log's head: writes every settled
 * face of the tenant (the indexes, not the tail) to `path` as one usearch file and says what it covers (taken
 * now: indexedUpTo, appliedUpTo = faces.lastSeq; entries applied later are replayed after the file like any).
 * Without a base the in-memory index is saved as it is. With one, `copy` (from copyBase; made now when absent
 * or of another base) is brought up to date first: faces removed since it was made are scrubbed, faces settled
 * since are added, so the lock is held for a save and those few changes only. The caller releases the copy.
 */
export async function writeSettled(faces: TenantFaces, path: string, readSettled: SettledFaceReader, copy?: BaseCopy): Promise<WrittenSettled> {
  const indexedUpTo = faces.indexedUpTo;
  const appliedUpTo = faces.lastSeq;
  if (!faces.base) {
    if (!faces.settled) throw new Error('nothing settled to save');
    faces.settled.save(path);
    return { content: snapshotContent(faces.settled, indexedUpTo, appliedUpTo, 0) };
  }
  // The state the file stands for, taken before anything awaits (faces keep changing meanwhile).
  const removed = new Set(faces.baseRemoved);
  const delta = new Set(faces.deltaSeqs);
  let made: BaseCopy | undefined;
  if (!copy || copy.base !== faces.base) copy = made = await copyBase(faces, path, readSettled);
  try {
    const gone = [...removed].filter((seq) => !copy.removed.has(seq));
    for (const seq of copy.delta) if (!delta.has(seq)) gone.push(seq);
    copy.index.remove(gone);
    const added = await addFromLog(
      copy.index,
      [...delta].filter((seq) => !copy.delta.has(seq)),
      faces.dimensions,
      readSettled,
    );
    await saveScrubbed(copy.index, path);
    return { content: snapshotContent(copy.index, indexedUpTo, appliedUpTo, copy.pqLinked + added), copyPrivateBytes: copy.privateBytes };
  } finally {
    made?.index.release();
  }
}

/**
 * Saves an index that nothing searches (a copy or an exact build) as a snapshot file: a PQ one first loses its
 * removed faces' graph links (CompressedFaceIndex.unlinkRemoved), so the file keeps nothing of an erased face.
 * usearch keeps a removed node's links (its vector is scrubbed all the same); it offers no way to clear them.
 */
export async function saveScrubbed(index: BaseIndex, path: string): Promise<void> {
  if (index instanceof CompressedFaceIndex) await index.unlinkRemoved();
  await index.save(path);
}

/**
 * Whether every component of `embedding` is a finite number. A face whose embedding is not (a model that returned
 * NaN) matches nothing (every similarity with it is NaN), and FAISS's PQ training refuses the whole build for
 * one (a cold load under pq then threw, and the worker's start with it): such faces are left out of the indexes
 * built and copied here.
 */
function finite(embedding: Float32Array): boolean {
  for (const value of embedding) if (!Number.isFinite(value)) return false;
  return true;
}

/** Adds log entries' faces to `index` (one add call: a usearch insert or a FAISS thread-pool trip); non-finite ones are left out. */
async function addEntries(index: BaseIndex, all: Extract<FaceLogEntry, { op: 'add' }>[], dimensions: number): Promise<void> {
  const entries = all.filter((entry) => finite(entry.embedding));
  const vectors = new Float32Array(entries.length * dimensions);
  entries.forEach((entry, i) => vectors.set(entry.embedding, i * dimensions));
  await index.add(
    entries.map((entry) => entry.seq),
    vectors,
  );
}

/**
 * What a snapshot file written from `index` says of itself: its format, and the third number of its name
 * (usearch's scrub sentinels, or the faces a PQ index linked on PQ distances).
 */
export function snapshotContent(index: BaseIndex, indexedUpTo: number, appliedUpTo: number, pqLinked: number): SnapshotContent {
  return index instanceof CompressedFaceIndex
    ? { indexedUpTo, appliedUpTo, sentinels: 0, format: 'faiss', pqLinked }
    : { indexedUpTo, appliedUpTo, sentinels: index.sentinelCount, format: 'usearch', pqLinked: 0 };
}

/** Adds the faces numbered `seqs` from their log entries (those gone meanwhile are left out); returns how many. */
async function addFromLog(index: BaseIndex, seqs: number[], dimensions: number, readSettled: SettledFaceReader): Promise<number> {
  seqs.sort((a, b) => a - b);
  let added = 0;
  for (let start = 0; start < seqs.length; start += COPY_BATCH) {
    const entries = [...(await readSettled(seqs.slice(start, start + COPY_BATCH))).values()].sort((a, b) => a.seq - b.seq);
    await addEntries(index, entries, dimensions);
    added += entries.length;
    await yieldToLoop();
  }
  return added;
}

/**
 * Whether the tenant's next PQ snapshot must be built from exact vectors (buildExact) rather than from a copy
 * of its base: it has no PQ base (none yet, or an int8 one from before FACE_INDEX_STORAGE=pq), or the faces
 * linked on PQ distances would pass PQ_REBUILD_SHARE of it.
 */
export function needsExactBuild(faces: TenantFaces): boolean {
  if (!(faces.base instanceof CompressedFaceIndex)) return true;
  const linked = (faces.baseFile?.pqLinked ?? 0) + (faces.deltaSeqs?.size ?? 0);
  // Removed faces stay as scrubbed nodes in every copy (only an exact build drops them): a tenant that mostly
  // shrinks would otherwise keep walking ever more random codes (recall falls) and keep their graph links.
  const scrubbed = faces.base.removedNodes + faces.baseRemoved.size;
  return linked + scrubbed > PQ_REBUILD_SHARE * Math.max(1, faces.base.size - faces.baseRemoved.size);
}

/**
 * Whether the tenant's next int8 snapshot must be built again from the log (buildExact with int8) rather than
 * copied from its int8 base: a copy keeps every scrub sentinel of the base (a random vector in a removed face's
 * slot, linked into the graph) and adds one per face removed since, so a tenant whose faces are erased and
 * replaced grew its file without bound (800 sentinels beside 300 faces after 8 rounds of 100) and its live faces
 * were walked past ever more random nodes (a live face no search reached, seen at 287 sentinels beside 180
 * faces). Rebuilt past the same share as PQ's scrubbed nodes (PQ_REBUILD_SHARE).
 */
export function needsInt8Rebuild(faces: TenantFaces): boolean {
  if (!(faces.base instanceof ApproximateFaceIndex)) return false;
  const scrubbed = faces.base.sentinelCount + faces.baseRemoved.size;
  return scrubbed > PQ_REBUILD_SHARE * Math.max(1, faces.base.size - faces.baseRemoved.size);
}

/**
 * A PQ index built from exact vectors, as the tenant's view stood when it was started, caught up since by catchUp;
 * or, under FACE_INDEX_STORAGE=int8 for a tenant whose base is a PQ file (written before the setting changed),
 * an int8 index built the same way (a PQ base holds no vectors to copy into an int8 file).
 */
export interface ExactBuild {
  index: BaseIndex;
  /** Every live face up to here was in the view's indexes and is in `index`. */
  coveredUpTo: number;
  /** Tombstones up to here are applied to `index`. */
  appliedUpTo: number;
  /** Faces added after compress (linked on PQ distances). */
  pqLinked: number;
  privateBytes: number;
}

/**
 * Phase 1 of a PQ snapshot without a usable base (needsExactBuild), outside the snapshot lock: every face the
 * tenant's view had indexed (live log entries up to its indexedUpTo, read page by page) is linked on exact
 * float32 distances (CompressedFaceIndex.addExact, on libuv's thread pool: the event loop runs meanwhile), then
 * compressed to PQ codes. Long: about 1–3 ms a face on 2 cores (tens of minutes at 10⁶), one worker at a time
 * (the lease). Transient cost: 512 bytes of float32 plus the graph per face until compress. Undefined (nothing
 * kept) when fewer than `minFaces` live faces were found. The caller releases `index`.
 */
export async function buildExact(faces: Pick<TenantFaces, 'dimensions' | 'indexedUpTo' | 'lastSeq'>, readLog: LogPageReader, minFaces = 1, storage: FaceIndexStorage = 'pq'): Promise<ExactBuild | undefined> {
  const before = residentMemory().private;
  const coveredUpTo = faces.indexedUpTo;
  const appliedUpTo = faces.lastSeq;
  const index: BaseIndex = storage === 'pq' ? CompressedFaceIndex.create(faces.dimensions) : ApproximateFaceIndex.create(faces.dimensions);
  try {
    let seqs: number[] = [];
    let vectors = new Float32Array(EXACT_BATCH * faces.dimensions);
    const flush = async () => {
      if (seqs.length === 0) return;
      const batch = vectors.subarray(0, seqs.length * faces.dimensions);
      if (index instanceof CompressedFaceIndex) await index.addExact(seqs, batch);
      else {
        index.add(seqs, batch);
        await yieldToLoop();
      }
      seqs = [];
      vectors = new Float32Array(EXACT_BATCH * faces.dimensions);
    };
    for (let after = 0; after < coveredUpTo; ) {
      const entries = await readLog(after);
      if (entries.length === 0) break;
      for (const entry of entries) {
        if (entry.op !== 'add' || entry.seq > coveredUpTo || !finite(entry.embedding)) continue;
        vectors.set(entry.embedding, seqs.length * faces.dimensions);
        seqs.push(entry.seq);
        if (seqs.length === EXACT_BATCH) await flush();
      }
      after = entries[entries.length - 1].seq;
    }
    await flush();
    if (index.size < minFaces) {
      index.release();
      return undefined;
    }
    if (index instanceof CompressedFaceIndex) await index.compress();
  } catch (error) {
    index.release();
    throw error;
  }
  return { index, coveredUpTo, appliedUpTo, pqLinked: 0, privateBytes: residentMemory().private - before };
}

/**
 * Brings an exact build up to the tenant's view: tombstones applied since it started remove their faces; faces
 * indexed since (up to faces.indexedUpTo) are added from the log (linked on PQ distances). Reads only the log
 * after the build's appliedUpTo. Run outside the lock, then again under it for what changed meanwhile.
 */
export async function catchUp(build: ExactBuild, faces: TenantFaces, readLog: LogPageReader): Promise<void> {
  const indexedUpTo = faces.indexedUpTo;
  const appliedUpTo = faces.lastSeq;
  const adds: Extract<FaceLogEntry, { op: 'add' }>[] = [];
  for (let after = Math.min(build.appliedUpTo, build.coveredUpTo); after < appliedUpTo; ) {
    const entries = await readLog(after);
    if (entries.length === 0) break;
    for (const entry of entries) {
      if (entry.seq > appliedUpTo) break;
      if (entry.op === 'del') {
        if (entry.seq > build.appliedUpTo) build.index.remove(entry.removedSeqs);
      } else if (entry.seq > build.coveredUpTo && entry.seq <= indexedUpTo) adds.push(entry);
    }
    after = entries[entries.length - 1].seq;
  }
  for (let start = 0; start < adds.length; start += COPY_BATCH) await addEntries(build.index, adds.slice(start, start + COPY_BATCH), faces.dimensions);
  if (build.index instanceof CompressedFaceIndex) build.pqLinked += adds.length;
  build.coveredUpTo = Math.max(build.coveredUpTo, indexedUpTo);
  build.appliedUpTo = Math.max(build.appliedUpTo, appliedUpTo);
}
