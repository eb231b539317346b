import { FaceMatch } from '@app/contracts';
import type { FaceLogEntry } from '@app/storage';
import { ApproximateFaceIndex } from './approximate-face-index';
import { dotProduct, FaceMatrix } from './face-matrix';

type AddEntry = Extract<FaceLogEntry, { op: 'add' }>;

/** Reads the float32 `add` entries of settled faces (from the tenant's log); absent = removed meanwhile. */
export type SettledFaceReader = (seqs: number[]) => Promise<Map<number, AddEntry>>;

/**
 * How far below the threshold the int8 index's similarity may be for a face to be checked exactly: int8
 * rounding moves a 128-d cosine by at most about ±0.01 (the bench reports the largest difference seen).
 */
export const RERANK_MARGIN = 0.03;

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
 * One tenant's faces in one worker: settled faces in an approximate index (usearch HNSW, int8), recent ones
 * in an exact float32 tail. Invariant: every live face with a sequence number up to `indexedUpTo` is in the
 * index, every later one the worker has applied is in the tail, so each face is in exactly one of them.
 * A match searches both: the tail exactly, the index for candidates whose exact similarity is then computed
 * from their float32 log entries, so no answer depends on int8 rounding and a removed face (whose log entry
 * is gone) can never come back.
 */
export class TenantFaces {
  readonly tail: FaceMatrix;
  settled?: ApproximateFaceIndex;
  /** Every live face up to here is in `settled`. */
  indexedUpTo = 0;
  /** Highest sequence number applied (adds and tombstones). */
  lastSeq = 0;
  /** The sync in flight (one at a time). */
  syncing?: Promise<void>;
  /** Faces moved into the index since the last snapshot this worker knows of. */
  settledSinceSnapshot = 0;

  constructor(readonly dimensions = 128) {
    this.tail = new FaceMatrix(dimensions);
  }

  /** Starts from a saved index that covers every live face up to `indexedUpTo`. */
  static fromSnapshot(index: ApproximateFaceIndex, indexedUpTo: number): TenantFaces {
    const faces = new TenantFaces(index.dimensions);
    faces.settled = index;
    faces.indexedUpTo = indexedUpTo;
    faces.lastSeq = indexedUpTo;
    return faces;
  }

  /** Faces held, tail and index together. */
  get size(): number {
    return this.tail.size + (this.settled?.size ?? 0);
  }

  /** Applies log entries in order: adds go to the tail, tombstones remove from wherever the face is. */
  apply(entries: FaceLogEntry[], now: number): void {
    for (const entry of entries) {
      if (entry.seq <= this.lastSeq && entry.op === 'add') continue;
      if (entry.op === 'add') {
        if (entry.seq > this.indexedUpTo) this.tail.add(entry.seq, entry.faceId, entry.imageHash, entry.embedding, now);
      } else {
        this.tail.remove(entry.removedSeqs);
        this.settled?.remove(entry.removedSeqs.filter((seq) => seq <= this.indexedUpTo));
      }
      this.lastSeq = Math.max(this.lastSeq, entry.seq);
    }
  }

  /**
   * The faces of other images, numbered below `beforeSeq`, at or above `threshold`: exact over the tail, and
   * over the index through its candidates (int8 similarity ≥ threshold − RERANK_MARGIN) checked exactly.
   */
  async match(query: Float32Array, beforeSeq: number, excludeImage: string, threshold: number, readSettled: SettledFaceReader, searchWidth = 256): Promise<TenantMatch> {
    const matches: FaceMatch[] = this.tail.search(query, beforeSeq, excludeImage, threshold);
    if (!this.settled || this.settled.size === 0) return { matches, checked: 0, truncated: false };
    const { candidates, truncated } = this.settled.searchAbove(query, threshold - RERANK_MARGIN, beforeSeq, searchWidth);
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
    if (!this.settled && this.tail.size < policy.minFaces) return 0;
    const taken = this.tail.takeOldest(now - policy.settleMs, policy.minFaces, policy.batch);
    if (!taken) return 0;
    this.settled ??= ApproximateFaceIndex.create(this.dimensions);
    this.settled.add(taken.seqs, taken.vectors);
    this.indexedUpTo = Math.max(this.indexedUpTo, taken.upToSeq);
    this.settledSinceSnapshot += taken.seqs.length;
    return taken.seqs.length;
  }
}
