import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { SnapshotContent } from '@app/storage/face-snapshots';
import { ApproximateFaceIndex } from './approximate-face-index';
import { residentMemory } from './process-memory';
import { SettledFaceReader, TenantFaces } from './tenant-faces';

/**
 * Faces read from the log and inserted into the copy per step: one pipelined read and, at 10⁶ faces, about
 * 0.4 s of usearch inserts on 2 busy cores (about 0.8 ms a face with 256 candidates while inserting, bench),
 * then the event loop runs again.
 */
const COPY_BATCH = 512;

/** A mutable copy of a tenant's viewed base with its removed faces scrubbed and its delta added, as of `removed`/`delta`. */
export interface BaseCopy {
  index: ApproximateFaceIndex;
  /** The base it copies (a copy of another base is useless). */
  base: ApproximateFaceIndex;
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
  const index = base.copyMutable(tempPath);
  try {
    index.remove(removed);
    await addFromLog(index, [...delta], faces.dimensions, readSettled);
  } catch (error) {
    index.release();
    throw error;
  }
  return { index, base, removed, delta, privateBytes: residentMemory().private - before };
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
    return { content: { indexedUpTo, appliedUpTo, sentinels: faces.settled.sentinelCount } };
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
    await addFromLog(
      copy.index,
      [...delta].filter((seq) => !copy.delta.has(seq)),
      faces.dimensions,
      readSettled,
    );
    copy.index.save(path);
    return { content: { indexedUpTo, appliedUpTo, sentinels: copy.index.sentinelCount }, copyPrivateBytes: copy.privateBytes };
  } finally {
    made?.index.release();
  }
}

async function addFromLog(index: ApproximateFaceIndex, seqs: number[], dimensions: number, readSettled: SettledFaceReader): Promise<void> {
  seqs.sort((a, b) => a - b);
  for (let start = 0; start < seqs.length; start += COPY_BATCH) {
    const entries = [...(await readSettled(seqs.slice(start, start + COPY_BATCH))).values()];
    const vectors = new Float32Array(entries.length * dimensions);
    entries.forEach((entry, i) => vectors.set(entry.embedding, i * dimensions));
    index.add(
      entries.map((entry) => entry.seq),
      vectors,
    );
    await yieldToLoop();
  }
}
