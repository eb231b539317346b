import { exactSearch, MetricKind } from 'usearch';

/**
 * How far below the threshold the SIMD pre-filter looks (cosine similarity of unit vectors). Its float32 sums in
 * another order differ from dotProduct's by about 1e-6 for 128-d unit vectors; 1e-3 keeps every face the exact
 * sum puts at or above the threshold, at the cost of a few more exact checks.
 */
const PREFILTER_MARGIN = 1e-3;
/** The pre-filter's first k: a face rarely has more matches among its tenant's recent faces (widened 4× at a time). */
const PREFILTER_FIRST_K = 64;
/**
 * Largest |row|·|query| for which the pre-filter is trusted. usearch returns the distance 1 − dot as a float32, and
 * its kernels may sum in float32: the error grows with the norms (about (d + 1)·2⁻²⁴·|row|·|query|), so for
 * vectors far from unit length (norm 1000: error ~0.06) it missed rows the exact sum puts at the threshold, and
 * a non-finite query (an Infinity: 0·∞ = NaN distances) broke its partial sort. Beyond this bound (and for any
 * non-finite query) the search is the scalar scan. 8 keeps the error below a tenth of PREFILTER_MARGIN at 128
 * dimensions (half of it at 1024); real faces are unit vectors (norm product ~1).
 */
const PREFILTER_MAX_NORM_PRODUCT = 8;

/**
 * Faces compared exactly: their float32 embeddings in one contiguous Float32Array, in sequence order. It holds a
 * small tenant's faces, and a large tenant's recent tail (faces not yet moved into its approximate index): the
 * faces that two workers insert at the same moment are always here, compared exactly. A search first finds the
 * rows near the threshold with usearch's SIMD exact search (float32), then decides each of them with dotProduct,
 * so the answer is the scalar scan's to the bit (`scalar: true` runs that scan alone: the bench's reference).
 */
export class FaceMatrix {
  private data: Float32Array;
  private seqs: Float64Array;
  private seenAt: Float64Array;
  private alive: Uint8Array;
  private faceIds: string[] = [];
  private imageHashes: string[] = [];
  private rows = 0;
  private live = 0;
  /** The largest norm of any row ever added (never lowered: removals only zero rows). */
  private maxRowNorm = 0;

  constructor(
    readonly dimensions = 128,
    capacity = 1024,
    private readonly options: { scalar?: boolean } = {},
  ) {
    this.data = new Float32Array(capacity * dimensions);
    this.seqs = new Float64Array(capacity);
    this.seenAt = new Float64Array(capacity);
    this.alive = new Uint8Array(capacity);
  }

  /** Faces held (removed ones excluded). */
  get size(): number {
    return this.live;
  }

  /** Bytes held per face (embedding, sequence number, time seen, flag), excluding the id strings. */
  get bytesPerFace(): number {
    return this.dimensions * 4 + 8 + 8 + 1;
  }

  /** Appends a face (a unit vector); `seq` must be higher than every face held (the log is applied in order). `seenAt` in ms. */
  add(seq: number, faceId: string, imageHash: string, embedding: Float32Array, seenAt = 0): void {
    if (embedding.length !== this.dimensions) throw new Error(`embedding has ${embedding.length} values, expected ${this.dimensions}`);
    if (this.rows > 0 && seq <= this.seqs[this.rows - 1]) throw new Error(`face ${seq} is not after ${this.seqs[this.rows - 1]}`);
    if (this.rows === this.seqs.length) this.grow();
    const row = this.rows++;
    this.data.set(embedding, row * this.dimensions);
    // A non-finite value (a log entry written wrong) is held as zeros: it matched nothing either way, and a NaN
    // would break the order the SIMD pre-filter sorts by (then any row might be left out of its top k).
    if (!embedding.every(Number.isFinite)) this.data.fill(0, row * this.dimensions, (row + 1) * this.dimensions);
    else this.maxRowNorm = Math.max(this.maxRowNorm, Math.sqrt(dotProduct(this.data, row * this.dimensions, embedding, this.dimensions)));
    this.seqs[row] = seq;
    this.seenAt[row] = seenAt;
    this.alive[row] = 1;
    this.faceIds[row] = faceId;
    this.imageHashes[row] = imageHash;
    this.live++;
  }

  /** Drops the faces added with these sequence numbers, zeroing their embeddings; returns how many were held. */
  remove(removedSeqs: Iterable<number>): number {
    let removed = 0;
    for (const seq of removedSeqs) {
      const row = this.rowsBefore(seq);
      if (row < this.rows && this.seqs[row] === seq && this.alive[row] === 1) {
        this.alive[row] = 0;
        this.data.fill(0, row * this.dimensions, (row + 1) * this.dimensions);
        this.live--;
        removed++;
      }
    }
    return removed;
  }

  /**
   * Faces with a sequence number below `beforeSeq`, from other images, at or above `threshold` (cosine
   * similarity; `query` a unit vector of `dimensions` values), in row order. Costs one pass over the rows before
   * `beforeSeq`: SIMD, about 0.02 µs a face on a 2-core EPYC (the scalar scan: 0.08–0.18 µs), plus one more pass
   * per 4× widening when a face has more than 64 rows near the threshold.
   */
  search(query: Float32Array, beforeSeq: number, excludeImage: string, threshold: number): { faceId: string; imageHash: string; similarity: number }[] {
    const found: { faceId: string; imageHash: string; similarity: number }[] = [];
    const d = this.dimensions;
    const q = Float32Array.from(query);
    const limit = this.rowsBefore(beforeSeq);
    const check = (row: number) => {
      if (this.alive[row] === 0) return;
      const dot = dotProduct(this.data, row * d, q, d);
      if (dot >= threshold && this.imageHashes[row] !== excludeImage) found.push({ faceId: this.faceIds[row], imageHash: this.imageHashes[row], similarity: dot });
    };
    const qNorm = Math.sqrt(dotProduct(q, 0, q, d));
    // Not `>`: a NaN (non-finite query) must take the scalar scan too.
    const trusted = qNorm * this.maxRowNorm <= PREFILTER_MAX_NORM_PRODUCT;
    if (this.options.scalar || !trusted) for (let row = 0; row < limit; row++) check(row);
    else for (const row of this.rowsNear(q, limit, threshold - PREFILTER_MARGIN)) check(row);
    return found;
  }

  /**
   * The rows before `limit` whose float32 similarity to `q` is at least `floor`, ascending: usearch's exact
   * search (SIMD inner products, then the top k), k widened 4× until the k-th is below `floor` or k covers them
   * all. Removed rows are zero (similarity 0) and are dropped by the caller. usearch reads the array from its
   * buffer's start (it ignores a view's offset): `data` and `q` own theirs.
   */
  private rowsNear(q: Float32Array, limit: number, floor: number): number[] {
    if (limit === 0) return [];
    const d = this.dimensions;
    const rows = this.data.subarray(0, limit * d);
    for (let k = Math.min(limit, PREFILTER_FIRST_K); ; k = Math.min(limit, k * 4)) {
      const { keys, distances } = exactSearch(rows, q, d, k, MetricKind.IP, 1) as { keys: BigUint64Array; distances: Float32Array };
      // MetricKind.IP's distance is 1 − the inner product.
      if (k === limit || 1 - distances[keys.length - 1] < floor) {
        const near: number[] = [];
        for (let i = 0; i < keys.length && 1 - distances[i] >= floor; i++) near.push(Number(keys[i]));
        return near.sort((a, b) => a - b);
      }
    }
  }

  /**
   * Takes the oldest faces off the front, to be moved into the approximate index: those seen at or before
   * `seenBefore`, and beyond that as many as it takes to leave at most `keepAtMost` rows; at most `limit`
   * rows per call. Returns the live ones (sequence numbers and a copy of their embeddings) and the highest
   * sequence number taken (alive or not), or undefined when nothing is due.
   */
  takeOldest(seenBefore: number, keepAtMost: number, limit: number): { seqs: Float64Array; vectors: Float32Array; upToSeq: number } | undefined {
    let count = 0;
    while (count < this.rows && count < limit && (this.seenAt[count] <= seenBefore || this.rows - count > keepAtMost)) count++;
    if (count === 0) return undefined;
    const d = this.dimensions;
    let taken = 0;
    for (let row = 0; row < count; row++) taken += this.alive[row];
    const seqs = new Float64Array(taken);
    const vectors = new Float32Array(taken * d);
    for (let row = 0, i = 0; row < count; row++) {
      if (this.alive[row] === 0) continue;
      seqs[i] = this.seqs[row];
      vectors.set(this.data.subarray(row * d, (row + 1) * d), i * d);
      i++;
    }
    const upToSeq = this.seqs[count - 1];
    this.data.copyWithin(0, count * d, this.rows * d);
    this.data.fill(0, (this.rows - count) * d, this.rows * d);
    this.seqs.copyWithin(0, count, this.rows);
    this.seenAt.copyWithin(0, count, this.rows);
    this.alive.copyWithin(0, count, this.rows);
    this.alive.fill(0, this.rows - count, this.rows);
    this.faceIds.splice(0, count);
    this.imageHashes.splice(0, count);
    this.rows -= count;
    this.live -= taken;
    return { seqs, vectors, upToSeq };
  }

  /** Rows are in sequence order: the first row whose sequence number is at least `seq`. */
  private rowsBefore(seq: number): number {
    let low = 0;
    let high = this.rows;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.seqs[mid] < seq) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  private grow(): void {
    const capacity = this.seqs.length * 2;
    const data = new Float32Array(capacity * this.dimensions);
    data.set(this.data);
    const seqs = new Float64Array(capacity);
    seqs.set(this.seqs);
    const seenAt = new Float64Array(capacity);
    seenAt.set(this.seenAt);
    const alive = new Uint8Array(capacity);
    alive.set(this.alive);
    this.data = data;
    this.seqs = seqs;
    this.seenAt = seenAt;
    this.alive = alive;
  }
}

/**
 * Σ data[base + k] · q[k] for k < d, summed in double precision in a fixed order, so the exact scan and the
 * exact check of the index's candidates give bit-identical similarities for the same pair.
 */
export function dotProduct(data: Float32Array, base: number, q: Float32Array, d: number): number {
  const unrolled = d - (d % 8);
  // Independent accumulators let the CPU overlap the multiply-adds.
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let k = 0;
  for (; k < unrolled; k += 8) {
    const b = base + k;
    s0 += data[b] * q[k] + data[b + 4] * q[k + 4];
    s1 += data[b + 1] * q[k + 1] + data[b + 5] * q[k + 5];
    s2 += data[b + 2] * q[k + 2] + data[b + 6] * q[k + 6];
    s3 += data[b + 3] * q[k + 3] + data[b + 7] * q[k + 7];
  }
  for (; k < d; k++) s0 += data[base + k] * q[k];
  return s0 + s1 + s2 + s3;
}
