/**
 * Every stored face's embedding in one contiguous Float32Array, in sequence order, so matching one new face
 * against all earlier ones is a single tight dot-product loop (no Redis scan per request).
 */
export class FaceMatrix {
  private data: Float32Array;
  private seqs: Float64Array;
  private alive: Uint8Array;
  private faceIds: string[] = [];
  private imageHashes: string[] = [];
  private readonly rowOf = new Map<string, number>();
  private rows = 0;
  /** Highest sequence number applied (adds and tombstones). */
  lastSeq = 0;

  constructor(
    readonly dimensions = 128,
    capacity = 1024,
  ) {
    this.data = new Float32Array(capacity * dimensions);
    this.seqs = new Float64Array(capacity);
    this.alive = new Uint8Array(capacity);
  }

  get size(): number {
    return this.rows;
  }

  /** Bytes held per face (embedding, sequence number, flag), excluding the id strings. */
  get bytesPerFace(): number {
    return this.dimensions * 4 + 8 + 1;
  }

  add(seq: number, faceId: string, imageHash: string, embedding: Float32Array): void {
    if (embedding.length !== this.dimensions) throw new Error(`embedding has ${embedding.length} values, expected ${this.dimensions}`);
    if (this.rows === this.seqs.length) this.grow();
    const row = this.rows++;
    this.data.set(embedding, row * this.dimensions);
    this.seqs[row] = seq;
    this.alive[row] = 1;
    this.faceIds[row] = faceId;
    this.imageHashes[row] = imageHash;
    const previous = this.rowOf.get(faceId);
    if (previous !== undefined) this.alive[previous] = 0;
    this.rowOf.set(faceId, row);
    this.lastSeq = Math.max(this.lastSeq, seq);
  }

  remove(seq: number, faceIds: string[]): void {
    for (const faceId of faceIds) {
      const row = this.rowOf.get(faceId);
      if (row !== undefined && this.seqs[row] < seq) {
        this.alive[row] = 0;
        this.rowOf.delete(faceId);
      }
    }
    this.lastSeq = Math.max(this.lastSeq, seq);
  }

  /** Faces with a sequence number below `beforeSeq`, from other images, at or above `threshold`. */
  search(query: Float32Array, beforeSeq: number, excludeImage: string, threshold: number): { faceId: string; imageHash: string; similarity: number }[] {
    const found: { faceId: string; imageHash: string; similarity: number }[] = [];
    const d = this.dimensions;
    const data = this.data;
    for (let row = 0; row < this.rows; row++) {
      if (this.seqs[row] >= beforeSeq) break;
      if (!this.alive[row]) continue;
      let dot = 0;
      const base = row * d;
      for (let k = 0; k < d; k++) dot += data[base + k] * query[k];
      if (dot >= threshold && this.imageHashes[row] !== excludeImage) found.push({ faceId: this.faceIds[row], imageHash: this.imageHashes[row], similarity: dot });
    }
    return found;
  }

  private grow(): void {
    const capacity = this.seqs.length * 2;
    const data = new Float32Array(capacity * this.dimensions);
    data.set(this.data);
    const seqs = new Float64Array(capacity);
    seqs.set(this.seqs);
    const alive = new Uint8Array(capacity);
    alive.set(this.alive);
    this.data = data;
    this.seqs = seqs;
    this.alive = alive;
  }
}
