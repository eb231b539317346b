import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchMatches, Index, MetricKind, ScalarKind } from 'usearch';

/**
 * HNSW parameters, measured by `npm run bench -- faces` on clustered identities (README "Face matching at
 * scale"): connectivity 16 (M; level 0 keeps 2M = 32 links) and 256 candidates while inserting
 * (expansion_add). At 200,000 faces, expansion_add 256 reached recall 1.000 of the exact scan at k = 512 where
 * usearch's default 128 stopped at 0.998; at 1,000,000 faces (default expansion_add, k 16–128) M = 8 found only
 * 18–60 % of the pairs and M = 12 33–86 %. At 1,000,000 this setting found 0.993 at width 256 (bench).
 */
export const HNSW = { connectivity: 16, expansionAdd: 256 } as const;

/**
 * The first search asks for `searchWidth` nearest faces (FACE_INDEX_SEARCH_WIDTH); while the last one is still
 * above the floor the search is repeated with 4× as many, up to MAX_NEIGHBOURS, so every face above the floor
 * is returned however many there are (a range search built from k-NN searches).
 */
export const MAX_NEIGHBOURS = 8192;
/**
 * An index of at most 4 × searchWidth faces is asked for all its faces (k = its size): about the cost of one
 * widened search. Still approximate: the beam may miss a face (HNSW on clustered 128-d faces missed about 1 in
 * 1,000 true pairs at k = 512 of 1,600 faces), though add() leaves none unlinked (relinkUnreached). Tenants
 * that small use the exact scan in production anyway (FACE_INDEX_MIN_FACES).
 */
export const EXHAUSTIVE_FACTOR = 4;

/**
 * How far below the threshold the int8 index's similarity may be for a face to be checked exactly: int8
 * rounding moves a 128-d cosine by at most about ±0.01 (the bench reports the largest difference seen).
 */
export const RERANK_MARGIN = 0.03;

/**
 * Neighbours asked for when a just-inserted face looks for itself (relinkUnreached): a linked node is its own
 * nearest neighbour, so it is first unless up to this many near-duplicates tie with it.
 */
const RELINK_CHECK_WIDTH = 16;

/** Keys at or above this are scrub sentinels, never faces (sequence numbers stay far below 2^53). */
const SENTINEL_BIT = 1n << 63n;

export interface Candidate {
  seq: number;
  /** Cosine similarity as the int8 index computes it (within about ±0.01 of the float32 value). */
  similarity: number;
}

/**
 * The settled faces of one tenant in a usearch HNSW graph (int8 vectors, cosine metric), keyed by sequence
 * number: 276 bytes per face in the saved file and about 380–440 in memory (measured), against 512 for the
 * float32 row alone that the exact scan needs. usearch (Unum, Apache-2.0) ships prebuilt binaries in its npm
 * package, so it installs offline from the registry; hnswlib-node was measured too (README) and builds from
 * source, holds float32 only and has no batch insert.
 *
 * Deletion scrubs: usearch's remove() only marks the node free and leaves its vector in memory and in every
 * file saved afterwards. So each removed face's slot is immediately reused by a sentinel (a random unit
 * vector under a key with the top bit set) that overwrites the vector; sentinels are skipped by search and
 * counted. (With no free slot left before a removal, the next insert reuses exactly the freed slot.)
 *
 * Two forms: a mutable index in this process's memory (create, load), and an immutable view of a snapshot
 * file (view): usearch memory-maps the file, so its graph and vectors are file-backed pages in the page cache
 * (one copy per host for every worker that views the same file, reclaimable under memory pressure) and the
 * process privately holds only usearch's per-face lookups (about 80 bytes per face, measured). A view cannot
 * remove (usearch throws "Can't remove from an immutable index"): TenantFaces filters removed faces of a view
 * by sequence number instead, and the next snapshot scrubs them (copyMutable + remove).
 *
 * All calls are synchronous native code on the caller's thread; callers keep batches small.
 */
export class ApproximateFaceIndex {
  /** See RERANK_MARGIN. */
  readonly rerankMargin = RERANK_MARGIN;
  private sentinels: number;
  private released = false;

  private constructor(
    private readonly index: Index,
    readonly dimensions: number,
    sentinels: number,
    /** A memory-mapped view of a file: searches only (remove and add throw). */
    readonly immutable = false,
  ) {
    this.sentinels = sentinels;
  }

  static create(dimensions: number): ApproximateFaceIndex {
    return new ApproximateFaceIndex(ApproximateFaceIndex.blank(dimensions), dimensions, 0);
  }

  /** Reads a file written by save(); `sentinels` is the count recorded with it. Throws on a bad file. */
  static load(path: string, dimensions: number, sentinels: number): ApproximateFaceIndex {
    const index = ApproximateFaceIndex.blank(dimensions);
    index.load(path);
    if (index.dimensions() !== dimensions) throw new Error(`face index ${path} has ${index.dimensions()} dimensions, expected ${dimensions}`);
    return new ApproximateFaceIndex(index, dimensions, sentinels);
  }

  /**
   * Memory-maps a file written by save() (usearch view): ready in tens of ms at 10⁶ faces, searches read the
   * mapped pages. The mapping stays valid when the file is deleted (an erasure's purge) until release(): the
   * bytes leave this process only then. Throws on a bad file.
   */
  static view(path: string, dimensions: number, sentinels: number): ApproximateFaceIndex {
    const index = ApproximateFaceIndex.blank(dimensions);
    index.view(path);
    if (index.dimensions() !== dimensions) throw new Error(`face index ${path} has ${index.dimensions()} dimensions, expected ${dimensions}`);
    return new ApproximateFaceIndex(index, dimensions, sentinels, true);
  }

  /**
   * A mutable in-memory copy of this index (a view or not), made by saving it to `tempPath` and loading that
   * file: it never reads the file a view was made from, which an erasure may have deleted. `tempPath` is
   * left in place (the caller overwrites or deletes it). Costs the whole index in private memory (about 390
   * bytes per face, measured) until release().
   */
  copyMutable(tempPath: string): ApproximateFaceIndex {
    this.assertLive();
    this.index.save(tempPath);
    return ApproximateFaceIndex.load(tempPath, this.dimensions, this.sentinels);
  }

  /**
   * Frees the index now (a view's mapping, a loaded index's memory) instead of whenever V8 collects the
   * wrapper, which does not see native memory. usearch's binding has no free(): viewing an empty index file
   * resets the native index. Afterwards every call throws.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    const empty = join(tmpdir(), `iiq-empty-face-index-${process.pid}-${randomBytes(6).toString('hex')}.usearch`);
    try {
      ApproximateFaceIndex.blank(this.dimensions).save(empty);
      this.index.view(empty);
    } finally {
      try {
        unlinkSync(empty);
      } catch {
        // nothing was written
      }
    }
  }

  /** Whether the face numbered `seq` is held. */
  has(seq: number): boolean {
    this.assertLive();
    return this.index.contains(BigInt(seq)) as boolean;
  }

  private assertLive(): void {
    if (this.released) throw new Error('face index used after release (a search on a replaced tenant view)');
  }

  private static blank(dimensions: number): Index {
    return new Index({
      dimensions,
      metric: MetricKind.Cos,
      quantization: ScalarKind.I8,
      connectivity: HNSW.connectivity,
      expansion_add: HNSW.expansionAdd,
      expansion_search: 64,
      multi: false,
    });
  }

  /** Faces held (sentinels excluded). */
  get size(): number {
    return this.released ? 0 : this.index.size() - this.sentinels;
  }

  get sentinelCount(): number {
    return this.sentinels;
  }

  /**
   * Adds faces: `seqs[i]` names the unit vector `vectors[i·d .. (i+1)·d)`. Runs on all cores (usearch's own
   * threads) and blocks the caller meanwhile: about 0.1–0.3 ms per face at 10⁶ faces on 2 cores.
   */
  add(seqs: ArrayLike<number>, vectors: Float32Array): void {
    if (seqs.length === 0) return;
    this.assertMutable();
    if (vectors.length !== seqs.length * this.dimensions) throw new Error(`${seqs.length} faces need ${seqs.length * this.dimensions} values, got ${vectors.length}`);
    const keys = new BigUint64Array(seqs.length);
    for (let i = 0; i < seqs.length; i++) keys[i] = BigInt(seqs[i]);
    const threads = this.insertThreads(seqs.length);
    this.index.add(keys, vectors, threads);
    if (threads > 1 && keys.length > 1) this.relinkUnreached(keys, vectors);
  }

  /**
   * Inserts again, on one thread, every face of a multi-threaded insert that a search for its own vector does not
   * return; returns how many. usearch 2.26's concurrent add() can leave a node stored but linked from nowhere, so
   * no search ever returns it, not even one asking for every face (unum-cloud/USearch#735, fix pending in #772):
   * measured here on clustered faces, 57 of 43,000 nodes in graphs of 300–3,000 and 1 in 5,000 at 20,000, none
   * with one thread. One-thread inserts would avoid it at twice the wall time of every batch; this check costs
   * one k-NN search per face (on every core) and left no node unreached in the same graphs. remove() frees the
   * node's slot and the next add reuses it, so the node is linked again from a fresh descent.
   */
  private relinkUnreached(keys: BigUint64Array, vectors: Float32Array): number {
    const found = this.index.search(vectors, RELINK_CHECK_WIDTH, availableParallelism()) as BatchMatches;
    let relinked = 0;
    for (let i = 0; i < keys.length; i++) {
      const from = i * RELINK_CHECK_WIDTH;
      if (found.keys.subarray(from, from + Number(found.counts[i])).includes(keys[i])) continue;
      this.index.remove(keys[i]);
      this.index.add(keys[i], vectors.subarray(i * this.dimensions, (i + 1) * this.dimensions), 1);
      relinked++;
    }
    return relinked;
  }

  /**
   * Threads for an insert of `count` faces: one for a single face, every core for a batch, and every core for any
   * insert that makes usearch grow the index (size + count >= capacity): usearch sizes its per-thread slots at
   * each growth to the threads of the insert that caused it, so a growth made by a single face left one slot and
   * every later batch that fitted threw "Reserve capacity ahead of insertions!" (settle's faces were then lost).
   */
  private insertThreads(count: number): number {
    return count > 1 || this.index.size() + count >= this.index.capacity() ? availableParallelism() : 1;
  }

  /** Removes the faces with these sequence numbers (absent ones are ignored) and scrubs their vectors; returns how many were held. */
  remove(seqs: Iterable<number>): number {
    this.assertMutable();
    let removed = 0;
    for (const seq of seqs) {
      if ((this.index.remove(BigInt(seq)) as number) === 0) continue;
      removed++;
      this.index.add(sentinelKey(), randomUnit(this.dimensions), this.insertThreads(1));
      this.sentinels++;
    }
    return removed;
  }

  /**
   * Every face with a sequence number below `beforeSeq` whose int8 similarity to `query` (unit vector) is at
   * least `floor`, best first, up to MAX_NEIGHBOURS, starting with a k-NN search of `searchWidth` (usearch
   * explores max(k, expansion_search) candidates). `truncated` says the cap was reached.
   */
  searchAbove(query: Float32Array, floor: number, beforeSeq: number, searchWidth: number): { candidates: Candidate[]; truncated: boolean } {
    this.assertLive();
    const total = this.index.size();
    if (total === 0) return { candidates: [], truncated: false };
    let wanted = total <= EXHAUSTIVE_FACTOR * searchWidth ? total : searchWidth;
    for (;;) {
      const found = this.index.search(query, wanted, 1);
      const count = found.keys.length;
      const lastSimilarity = count > 0 ? 1 - found.distances[count - 1] : -1;
      const more = count === wanted && wanted < total && lastSimilarity >= floor;
      if (!more || wanted >= MAX_NEIGHBOURS) {
        const candidates: Candidate[] = [];
        for (let i = 0; i < count; i++) {
          const similarity = 1 - found.distances[i];
          if (similarity < floor) break;
          const key = found.keys[i];
          if (key >= SENTINEL_BIT) continue;
          const seq = Number(key);
          if (seq < beforeSeq) candidates.push({ seq, similarity });
        }
        return { candidates, truncated: more };
      }
      wanted = Math.min(wanted * 4, MAX_NEIGHBOURS, total);
    }
  }

  /** Writes the whole index (graph and int8 vectors) to `path`; blocks the caller (≈ 0.2–0.5 s at 10⁶ faces). */
  save(path: string): void {
    this.assertLive();
    this.index.save(path);
  }

  private assertMutable(): void {
    this.assertLive();
    if (this.immutable) throw new Error('a viewed face index is immutable (TenantFaces filters its removed faces instead)');
  }
}

function sentinelKey(): bigint {
  return SENTINEL_BIT | randomBytes(8).readBigUInt64BE() >> 1n;
}

/** A random unit vector: noise that stands for nobody. */
function randomUnit(dimensions: number): Float32Array {
  const bytes = randomBytes(dimensions * 2);
  const v = new Float32Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    v[i] = bytes.readInt16LE(i * 2) || 1;
    norm += v[i] * v[i];
  }
  norm = Math.sqrt(norm);
  for (let i = 0; i < dimensions; i++) v[i] /= norm;
  return v;
}

/** Bytes read per step while a file's graph is checked (checkGraph): the file is never held whole. */
const CHECK_CHUNK = 1 << 20;
/** Largest connectivity and level a file may declare (ours: 16 and 32 links, a dozen levels at 10^6 faces). */
const CHECK_MAX_LINKS = 1024;
const CHECK_MAX_LEVEL = 64;
/** usearch's metric_kind_t::cos_k ('c') and scalar_kind_t::i8_k, as its file head stores them. */
const USEARCH_COSINE = 0x63;
const USEARCH_INT8 = 23;

/**
 * Resolves when the usearch file at `path` holds int8 cosine vectors of `dimensions` and every link of it (as
 * save() writes it: u32 rows and columns, the int8 vectors, a 64-byte head, then the graph: five u64 (size,
 * connectivity, base connectivity, max level, entry slot), an i16 level per node, and per node its key (u64),
 * level (i16) and one list per level of a u32 count
 * and the slots) names a node of the file, each count is within its list, each node's level within the graph's
 * and the entry point on the top level; rejects ("… is corrupt: …") otherwise. usearch's view() checks only
 * that the nodes fit in the file: one flipped byte in a link made a search read outside the mapping (a
 * segmentation fault), at every start since workers view the newest file. Call before view(). Reads the file a
 * CHECK_CHUNK at a time (asynchronously; each chunk is parsed in a few ms, the event loop runs between them):
 * about 1 µs a face, so about 1 s at 10^6 faces; the pages it reads are the ones the view maps.
 */
export async function checkGraph(path: string, dimensions: number): Promise<void> {
  const fail = (what: string): never => {
    throw new Error(`${path} is corrupt: ${what}`);
  };
  const file = await open(path, 'r');
  try {
    const size = (await file.stat()).size;
    const buffer = Buffer.alloc(CHECK_CHUNK);
    let start = 0; // file offset of buffer[0]
    let filled = 0;
    let at = 0; // file offset of the next byte to parse
    /** Makes the `bytes` from `at` readable at buffer[at - start] (bytes <= CHECK_CHUNK). */
    const need = async (bytes: number) => {
      if (at + bytes > size) fail('it ends early');
      if (at >= start && at + bytes <= start + filled) return;
      start = at;
      filled = (await file.read(buffer, 0, Math.min(buffer.length, size - at), at)).bytesRead;
      if (filled < bytes) fail('it ends early');
    };
    const u32 = () => {
      const value = buffer.readUInt32LE(at - start);
      at += 4;
      return value;
    };
    const u64 = () => {
      const value = buffer.readBigUInt64LE(at - start);
      at += 8;
      return value > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(value);
    };
    await need(8);
    const rows = u32();
    const columns = u32();
    if (columns !== dimensions) fail(`its vectors are ${columns} bytes, expected ${dimensions}`);
    at += rows * columns;
    // The head: "usearch", three u16 versions, then one byte each: metric, scalar, key and slot kinds, then u64
    // counts (present, deleted) and dimensions. usearch's view() takes the metric and the scalar kind from it:
    // another scalar kind than int8 (one byte flipped) made every distance read past the vectors (a segfault).
    await need(64);
    const head = buffer.subarray(at - start, at - start + 64);
    if (head.toString('latin1', 0, 7) !== 'usearch') fail('it is not a usearch index');
    if (head[13] !== USEARCH_COSINE || head[14] !== USEARCH_INT8 || Number(head.readBigUInt64LE(33)) !== dimensions) fail('its head is not the int8 cosine index of these dimensions');
    at += 64;
    await need(40);
    const nodes = u64();
    const links = u64();
    const baseLinks = u64();
    const maxLevel = u64();
    const entry = u64();
    if (nodes === 0) return;
    if (nodes !== rows) fail('its node and vector counts disagree');
    if (!(links >= 1 && links <= CHECK_MAX_LINKS && baseLinks >= 1 && baseLinks <= CHECK_MAX_LINKS) || maxLevel > CHECK_MAX_LEVEL) fail('its graph parameters are out of range');
    if (nodes > (size - at) / 2) fail('it ends early');
    const levels = new Int16Array(nodes);
    for (let i = 0; i < nodes; i++) {
      if (i % 4096 === 0) await need(2 * Math.min(4096, nodes - i));
      levels[i] = buffer.readInt16LE(at - start);
      at += 2;
    }
    if (entry >= nodes || levels[entry] !== maxLevel) fail('its entry point is out of range');
    const list = (capacity: number) => {
      const count = u32();
      if (count > capacity) fail('a link list is longer than its room');
      for (let k = 0; k < count; k++) if (buffer.readUInt32LE(at - start + 4 * k) >= nodes) fail('a link points outside the index');
      at += 4 * capacity;
    };
    for (let i = 0; i < nodes; i++) {
      const level = levels[i];
      if (level < 0 || level > maxLevel) fail("a node's level is out of range");
      // The whole tape: key (u64), level (i16), the base list, one list per upper level.
      await need(10 + 4 + 4 * baseLinks + level * (4 + 4 * links));
      at += 8;
      if (buffer.readInt16LE(at - start) !== level) fail("a node's level is out of range");
      at += 2;
      list(baseLinks);
      for (let l = 1; l <= level; l++) list(links);
    }
    if (at !== size) fail('it has bytes after its graph');
  } finally {
    await file.close();
  }
}
