import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { SnapshotContent } from '@app/storage/face-snapshots';
import { residentMemory } from './process-memory';
import { SettledFaceReader, TenantFaces } from './tenant-faces';

/**
 * Faces read from the log and inserted into the copy per step while a snapshot is written: one pipelined
 * read and about 0.1–0.3 s of usearch inserts on 2 cores at 10⁶ faces, then the event loop runs again.
 */
const COPY_BATCH = 512;

export interface WrittenSettled {
  content: SnapshotContent;
  /**
   * Private memory the mutable copy of the base took while it was built (RssAnon after it was filled minus
   * before it was made, bytes); absent when there was no base (the in-memory index was saved as it is).
   */
  copyPrivateBytes?: number;
}

/**
 * Writes every settled face of the tenant (the indexes, not the tail) to `path` as one usearch file, and says
 * what it covers. Without a base, the in-memory index is saved as it is. With one (a viewed snapshot): a
 * mutable copy of the base (ApproximateFaceIndex.copyMutable, which never reads the base's own file: an
 * erasure may have deleted it), its removed faces scrubbed (sentinels), the delta's faces added from their
 * float32 log entries (a face removed from the log meanwhile is left out), saved, and freed. What it covers is
 * taken when it starts (indexedUpTo, appliedUpTo = faces.lastSeq): the caller has synced the tenant to the
 * log's head under the snapshot lock, and entries applied meanwhile are replayed after the file like any.
 * Transient cost: the whole index in private memory (about 390 bytes per face, measured) while it runs.
 */
export async function writeSettled(faces: TenantFaces, path: string, readSettled: SettledFaceReader): Promise<WrittenSettled> {
  const indexedUpTo = faces.indexedUpTo;
  const appliedUpTo = faces.lastSeq;
  if (!faces.base) {
    if (!faces.settled) throw new Error('nothing settled to save');
    faces.settled.save(path);
    return { content: { indexedUpTo, appliedUpTo, sentinels: faces.settled.sentinelCount } };
  }
  const removed = [...faces.baseRemoved];
  const delta = [...(faces.deltaSeqs ?? [])].sort((a, b) => a - b);
  const before = residentMemory().private;
  const copy = faces.base.copyMutable(path);
  try {
    copy.remove(removed);
    const d = faces.dimensions;
    for (let start = 0; start < delta.length; start += COPY_BATCH) {
      const entries = [...(await readSettled(delta.slice(start, start + COPY_BATCH))).values()];
      const vectors = new Float32Array(entries.length * d);
      entries.forEach((entry, i) => vectors.set(entry.embedding, i * d));
      copy.add(
        entries.map((entry) => entry.seq),
        vectors,
      );
      await yieldToLoop();
    }
    const copyPrivateBytes = residentMemory().private - before;
    copy.save(path);
    return { content: { indexedUpTo, appliedUpTo, sentinels: copy.sentinelCount }, copyPrivateBytes };
  } finally {
    copy.release();
  }
}
