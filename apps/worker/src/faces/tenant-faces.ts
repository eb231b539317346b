import { FaceMatch } from '@app/contracts';
import type { FaceLogEntry, FaceLogRead } from '@app/storage';
import type { FaceSnapshotFile } from '@app/storage/face-snapshots';
import { ApproximateFaceIndex, Candidate } from './approximate-face-index';
import { CompressedFaceIndex } from './compressed-face-index';
import { dotProduct, FaceMatrix } from './face-matrix';

type AddEntry = Extract<FaceLogEntry, { op: 'add' }>;

/** Reads the float32 `add` entries of settled faces (from the tenant's log); absent = removed meanwhile. */
export type SettledFaceReader = (seqs: number[]) => Promise<Map<number, AddEntry>>;

export { RERANK_MARGIN } from './approximate-face-index';

/** A viewed int8 snapshot (usearch, memory-mapped) or a loaded PQ snapshot (FAISS): FaceSnapshotFile.format. */
export type BaseIndex = ApproximateFaceIndex | CompressedFaceIndex;

export interface SettlePolicy {
  /** Below this many faces (and no index yet) the tenant is matched by the exact scan alone. */
  minFaces: number;
  /** A face stays in the exact tail at least this long after it was seen (ms). */
  settleMs: number;
  /** Faces moved per call (each call blocks while usearch inserts them). */
  batch: number;
}

export interface TenantMatch {
  matches: FaceMatch[];
  /** Settled faces checked exactly (from the log) for this face. */
  checked: number;
  /** The index returned MAX_NEIGHBOURS faces above the floor: some matches may be missing. */
  truncated: boolean;
}

/**
 * One tenant's faces in one worker, in up to three parts, each face in exactly one of them:
 *   - `base`: an immutable, memory-mapped view of the tenant's newest snapshot file (every live face up to
 *     `baseUpTo`), absent for a tenant without a snapshot;
 *   - `settled`: a mutable usearch index in memory: with a base, the "delta" of faces settled since that
 *     snapshot (small: the next snapshot absorbs it); without one, every settled face (the tenant as before
 *     snapshots were viewed);
 *   - `tail`: recent faces in an exact float32 scan (FaceMatrix).
 * Invariant: every live face with a sequence number up to `indexedUpTo` is in base or settled, every later
 * one the worker has applied is in the tail. A match searches all three: the tail exactly, the two indexes
 * for candidates whose exact similarity is then computed from their float32 log entries, so no answer
 * depends on int8 rounding and a removed face (whose log entry is gone) can never come back. A view cannot
 * remove, so the base's removed faces are also kept out by sequence number (`baseRemoved`, at most the
 * faces removed since the snapshot; the next snapshot scrubs them and the tenant's view is swapped to it).
 */
export class TenantFaces {
  readonly tail: FaceMatrix;
  settled?: ApproximateFaceIndex;
  /** The viewed snapshot and the file it maps (undefined: the tenant has none in this worker). */
  readonly base?: BaseIndex;
  readonly baseFile?: FaceSnapshotFile;
  /** Faces of the base removed since its snapshot (tombstones applied after it): never offered. */
  readonly baseRemoved = new Set<number>();
  /** With a base: the sequence numbers in `settled` (what the next snapshot adds to a copy of the base). */
  readonly deltaSeqs?: Set<number>;
  /** Every live face up to here is in `base` or `settled`. */
  indexedUpTo = 0;
  /** Highest sequence number applied (adds and tombstones). */
  lastSeq = 0;
  /**
   * The last entry applied, as `entryKey` names it: after Redis lost writes, the number may be given to another
   * entry, which the next read of the log shows (`regressed`).
   */
  lastEntry?: { seq: number; key: string };
  /** The sync in flight (one at a time). */
  syncing?: Promise<void>;
  /** Faces moved into the index since the last snapshot this worker knows of. */
  settledSinceSnapshot = 0;

  constructor(
    readonly dimensions = 128,
    base?: { index: BaseIndex; file: FaceSnapshotFile },
  ) {
    this.tail = new FaceMatrix(dimensions);
    if (base) {
      this.base = base.index;
      this.baseFile = base.file;
      this.deltaSeqs = new Set();
      this.indexedUpTo = base.file.indexedUpTo;
      this.lastSeq = base.file.indexedUpTo;
    }
  }

  /**
   * Starts from a snapshot file that covers every live face up to `file.indexedUpTo`, viewed (memory-mapped,
   * immutable); the log after `indexedUpTo` is then applied as usual.
   */
  static fromSnapshot(index: BaseIndex, file: FaceSnapshotFile): TenantFaces {
    return new TenantFaces(index.dimensions, { index, file });
  }

  /** Faces held, tail and indexes together. */
  get size(): number {
    return this.tail.size + this.indexedSize;
  }

  /** Faces in base (removed ones excluded) and settled. */
  get indexedSize(): number {
    return (this.base ? this.base.size - this.baseRemoved.size : 0) + (this.settled?.size ?? 0);
  }

  /** Frees the native indexes (after this view was replaced by a newer one); later searches throw. */
  release(): void {
    this.base?.release();
    this.settled?.release();
  }

  /** Applies log entries in order: adds go to the tail, tombstones remove from wherever the face is. */
  apply(entries: FaceLogEntry[], now: number): void {
    for (const entry of entries) {
      if (entry.seq <= this.lastSeq && entry.op === 'add') continue;
      if (entry.op === 'add') {
        if (entry.seq > this.indexedUpTo) this.tail.add(entry.seq, entry.faceId, entry.imageHash, entry.embedding, now);
      } else {
        this.tail.remove(entry.removedSeqs);
        const settledSeqs = entry.removedSeqs.filter((seq) => seq <= this.indexedUpTo);
        this.settled?.remove(settledSeqs);
        for (const seq of settledSeqs) {
          this.deltaSeqs?.delete(seq);
          if (this.base && seq <= this.baseFile!.indexedUpTo && this.base.has(seq)) this.baseRemoved.add(seq);
        }
      }
      if (entry.seq >= this.lastSeq) this.lastEntry = { seq: entry.seq, key: entryKey(entry) };
      this.lastSeq = Math.max(this.lastSeq, entry.seq);
    }
  }

  /**
   * Whether a read of the log (made with `check: lastEntry.seq`) shows that Redis lost writes this view has
   * applied: its counter is below what was applied, or the entry last applied now holds something else (the
   * number was given out again, and the counter has passed it meanwhile). An entry gone is not a sign (erasure
   * deletes entries). The view is then stale for good: faces numbered again at or below its cursor never enter it.
   */
  regressed(read: FaceLogRead): boolean {
    if (read.head < this.lastSeq) return true;
    return read.checked !== undefined && read.checked !== null && this.lastEntry !== undefined && read.checked.seq === this.lastEntry.seq && entryKey(read.checked) !== this.lastEntry.key;
  }

  /**
   * The faces of other images, numbered below `beforeSeq`, at or above `threshold`: exact over the tail, and
   * over base and settled through their candidates (approximate similarity ≥ threshold − the index's rerankMargin) checked
   * exactly. Everything up to the first await runs synchronously, so a view replaced meanwhile is not read.
   */
  async match(query: Float32Array, beforeSeq: number, excludeImage: string, threshold: number, readSettled: SettledFaceReader, searchWidth = 256): Promise<TenantMatch> {
    const matches: FaceMatch[] = this.tail.search(query, beforeSeq, excludeImage, threshold);
    const candidates: Candidate[] = [];
    let truncated = false;
    for (const index of [this.base, this.settled]) {
      if (!index || index.size === 0) continue;
      const found = index.searchAbove(query, threshold - index.rerankMargin, beforeSeq, searchWidth);
      truncated ||= found.truncated;
      for (const candidate of found.candidates) if (index !== this.base || !this.baseRemoved.has(candidate.seq)) candidates.push(candidate);
    }
    if (candidates.length === 0) return { matches, checked: 0, truncated };
    const entries = await readSettled(candidates.map((candidate) => candidate.seq));
    const seen = new Set(matches.map((match) => match.faceId));
    for (const entry of entries.values()) {
      if (entry.imageHash === excludeImage || seen.has(entry.faceId)) continue;
      const similarity = dotProduct(entry.embedding, 0, query, this.dimensions);
      if (similarity >= threshold) matches.push({ faceId: entry.faceId, imageHash: entry.imageHash, similarity });
    }
    return { matches, checked: candidates.length, truncated };
  }

  /**
   * Moves up to `policy.batch` faces from the tail into the index: those seen more than `settleMs` ago, and
   * any beyond `minFaces` in the tail. Nothing while the tenant is small and has no index. Returns how many
   * faces were moved.
   */
  settle(now: number, policy: SettlePolicy): number {
    if (!this.settled && !this.base && this.tail.size < policy.minFaces) return 0;
    const taken = this.tail.takeOldest(now - policy.settleMs, policy.minFaces, policy.batch);
    if (!taken) return 0;
    this.settled ??= ApproximateFaceIndex.create(this.dimensions);
    this.settled.add(taken.seqs, taken.vectors);
    for (const seq of taken.seqs) this.deltaSeqs?.add(seq);
    this.indexedUpTo = Math.max(this.indexedUpTo, taken.upToSeq);
    this.settledSinceSnapshot += taken.seqs.length;
    return taken.seqs.length;
  }
}

/** What tells two log entries apart: a face id for an add, the removed numbers for a tombstone. */
export function entryKey(entry: FaceLogEntry): string {
  return entry.op === 'add' ? `add:${entry.faceId}` : `del:${entry.removedSeqs.join(',')}`;
}
