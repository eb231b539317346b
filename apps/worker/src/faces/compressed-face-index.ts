import { Candidate, EXHAUSTIVE_FACTOR, HNSW, MAX_NEIGHBOURS } from './approximate-face-index';
import { FaissBinding, NativeFacePqIndex, loadFaissBinding } from './faiss-binding';

/**
 * Product quantisation of the stored faces: 32 sub-quantizers of 8 bits, so 32 bytes a face instead of usearch's
 * 128 (int8). Measured on 200,000 clustered faces (README "Face matching at scale"): with the graph built on
 * exact vectors, 32 sub-quantizers found every pair above the threshold at widths 128–512 with a 0.05 margin;
 * 16 lost 0.3–1 %.
 */
export const PQ_SUB_QUANTIZERS = 32;
/**
 * Fewest faces a PQ snapshot is built for: FAISS asks for 39 training points per centroid (256 centroids per
 * sub-quantizer) and refuses fewer than 256. Smaller indexes stay int8 (they are small anyway).
 */
export const PQ_MIN_FACES = 39 * 256;
/** Faces the PQ codebooks are trained on (k-means, 256 centroids per sub-quantizer): FAISS asks for ≥ 39 × 256. */
export const PQ_TRAINING_FACES = 65_536;
/**
 * How far below the threshold a PQ similarity may be for a face to be checked exactly. Measured on 200,000
 * clustered faces (codebooks trained on 65,536 of them), PQ similarity minus exact cosine over 3,816 pairs at
 * 0.35 or more: median −0.006, 1st percentile −0.063, lowest −0.089, highest +0.102 (int8: about ±0.01). A
 * candidate costs one pipelined read of its log entry; 0.1 offers about 30 a query against 10 at 0.05 on those
 * 200,000 faces, and a median of 59 at 1,000,000 (bench).
 */
export const PQ_RERANK_MARGIN = 0.1;

/**
 * The settled faces of one tenant as a FAISS HNSW graph with PQ storage (faiss-binding): about 185 bytes a face
 * in memory at connectivity 16 (level-0 links 128, code 32, label 8, level and offset 12), against usearch's
 * 277 file + ~100 private. FAISS cannot memory-map an HNSW index, so a snapshot is loaded: private memory.
 *
 * Built in two phases: `create` + `addExact` (links chosen on exact float32 distances, as in IndexHNSWFlat),
 * then `compress` (codebooks trained, vectors replaced by codes, the graph kept). FAISS's own IndexHNSWPQ
 * chooses links on PQ distances, which reaches weak pairs badly (recall 0.97 at width 512 at 10⁶ faces). Faces
 * added after compress (`add`) are linked on PQ distances to the stored codes (asymmetric), so a snapshot
 * that added many faces that way is rebuilt exactly (settled-snapshot, PQ_REBUILD_SHARE).
 *
 * Every heavy call (addExact, compress, add, save, load) runs on libuv's thread pool and returns a promise;
 * search, has and remove are synchronous (about 1.6–2 ms of CPU a search at width 256 on 200,000 faces; has and
 * remove binary-search the labels). One changing call at a time: while add, compress or load runs every other
 * call throws (the index is never searched while it changes); beside a save, searches run and changes throw. A
 * release asked for meanwhile happens when the running call ends.
 */
export class CompressedFaceIndex {
  /** See PQ_RERANK_MARGIN. */
  readonly rerankMargin = PQ_RERANK_MARGIN;

  private constructor(
    private readonly native: NativeFacePqIndex,
    readonly dimensions: number,
  ) {}

  /** Whether this machine built the binding (no libfaiss-dev: not; the worker then keeps int8 snapshots). */
  static get available(): boolean {
    return loadFaissBinding() !== undefined;
  }

  /** An empty index in its exact phase. Throws when the binding is not built. */
  static create(dimensions: number): CompressedFaceIndex {
    return new CompressedFaceIndex(new (binding().FacePqIndex)(dimensions, HNSW.connectivity, HNSW.expansionAdd), dimensions);
  }

  /** Reads a file written by save() into memory. Rejects on a bad file. */
  static async load(path: string, dimensions: number): Promise<CompressedFaceIndex> {
    const native = await binding().FacePqIndex.load(path);
    const index = new CompressedFaceIndex(native, dimensions);
    const held = native.stats().dimensions;
    if (held !== dimensions) {
      native.release();
      throw new Error(`face index ${path} has ${held} dimensions, expected ${dimensions}`);
    }
    return index;
  }

  /** Adds faces with links chosen on exact distances (before compress). `vectors`: seqs.length × d unit vectors. */
  addExact(seqs: ArrayLike<number>, vectors: Float32Array): Promise<void> {
    return this.native.addExact(Float64Array.from(seqs), vectors);
  }

  /** Trains the codebooks on up to PQ_TRAINING_FACES of the faces, encodes every face, drops the float32 vectors. */
  compress(): Promise<void> {
    return this.native.compress(PQ_SUB_QUANTIZERS, PQ_TRAINING_FACES);
  }

  /** Adds faces after compress (links on PQ distances). */
  add(seqs: ArrayLike<number>, vectors: Float32Array): Promise<void> {
    if (seqs.length === 0) return Promise.resolve();
    return this.native.add(Float64Array.from(seqs), vectors);
  }

  /** Removes the faces with these sequence numbers (absent ones are ignored), overwriting their codes; returns how many were held. */
  remove(seqs: Iterable<number>): number {
    const list = Float64Array.from(seqs);
    return list.length === 0 ? 0 : this.native.remove(list);
  }

  /** Whether the face numbered `seq` is held (and not removed). */
  has(seq: number): boolean {
    return this.native.has(seq);
  }

  /** Faces held, removed ones excluded (0 after release). */
  get size(): number {
    if (this.released) return 0;
    const stats = this.native.stats();
    return stats.total - stats.removed;
  }

  /** Removed faces still stored as scrubbed nodes (random codes the graph still links through); 0 after release. */
  get removedNodes(): number {
    if (this.released) return 0;
    return this.native.stats().removed;
  }

  /** The label of the node every search starts from (a sequence number; −1 − seq once removed): for checks. */
  get entryLabel(): number {
    this.assertLive();
    return this.native.stats().entryLabel;
  }

  /** Faces stored, removed ones included (the search's k is bounded by it). */
  private get total(): number {
    this.assertLive();
    return this.native.stats().total;
  }

  private released = false;

  private assertLive(): void {
    if (this.released) throw new Error('face index used after release (a search on a replaced tenant view)');
  }

  /** Removed faces stay in the graph as scrubbed nodes (never returned), so none are sentinels. */
  readonly sentinelCount = 0;

  /**
   * Every face numbered below `beforeSeq` whose PQ similarity to `query` (unit vector) is at least `floor`, best
   * first, up to MAX_NEIGHBOURS: the same widening k-NN search as ApproximateFaceIndex.searchAbove.
   */
  searchAbove(query: Float32Array, floor: number, beforeSeq: number, searchWidth: number): { candidates: Candidate[]; truncated: boolean } {
    const total = this.total;
    if (total === 0) return { candidates: [], truncated: false };
    let wanted = total <= EXHAUSTIVE_FACTOR * searchWidth ? total : searchWidth;
    for (;;) {
      const found = this.native.search(query, wanted, Math.max(wanted, searchWidth));
      const count = found.labels.length;
      // Squared L2 between unit vectors is 2 − 2·cos.
      const lastSimilarity = count > 0 ? 1 - found.distances[count - 1] / 2 : -1;
      const more = count === wanted && wanted < total && lastSimilarity >= floor;
      if (!more || wanted >= MAX_NEIGHBOURS) {
        const candidates: Candidate[] = [];
        for (let i = 0; i < count; i++) {
          const similarity = 1 - found.distances[i] / 2;
          if (similarity < floor) break;
          const seq = found.labels[i];
          if (seq >= 0 && seq < beforeSeq) candidates.push({ seq, similarity });
        }
        return { candidates, truncated: more };
      }
      wanted = Math.min(wanted * 4, MAX_NEIGHBOURS, total);
    }
  }

  /**
   * The `k` nodes nearest `query` with their labels as stored: a sequence number, or −1 − seq for a removed face
   * (its node stays, its code overwritten). For checks that a removal scrubbed the face (tests).
   */
  nearestNodes(query: Float32Array, k: number): { label: number; similarity: number }[] {
    const found = this.native.search(query, k, k);
    return Array.from(found.labels, (label, i) => ({ label, similarity: 1 - found.distances[i] / 2 }));
  }

  /**
   * Clears every graph link to and from removed faces (their codes are scrubbed already), on the thread pool;
   * resolves with the links cleared (0 when none were left). A snapshot is saved after it, so no file keeps an
   * erased face's neighbourhood, from which its embedding could be estimated (cosine ~0.87, addon.cc); then links
   * live faces whose only routes ran through removed ones again (level 0 strongly connected among live faces). It
   * changes the graph: only for a copy or a build that nothing searches (searches throw busy while it runs).
   */
  unlinkRemoved(): Promise<number> {
    this.assertLive();
    return this.native.unlinkRemoved();
  }

  /** Writes the index (graph, codebooks, codes, labels) to `path`. */
  save(path: string): Promise<void> {
    return this.native.save(path);
  }

  /** A separate copy in memory (saved to `tempPath`, then loaded; the caller deletes the file). */
  async copy(tempPath: string): Promise<CompressedFaceIndex> {
    await this.save(tempPath);
    return CompressedFaceIndex.load(tempPath, this.dimensions);
  }

  /** Frees the native memory now (V8 does not see it); later calls throw. */
  release(): void {
    if (this.released) return;
    this.native.release();
    this.released = true;
  }
}

function binding(): FaissBinding {
  const loaded = loadFaissBinding();
  if (!loaded) throw new Error('the FAISS face index is not built on this machine (npm run build:native needs libfaiss-dev)');
  return loaded;
}

