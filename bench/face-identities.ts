/**
 * Synthetic face embeddings made of clustered identities, for the face-index bench (npm run bench -- faces).
 *
 * Each identity is a random unit vector c in 128 dimensions (different people: cosine similarity about
 * N(0, 1/√128), sd 0.088, as the well-resolved fixture faces measure: impostor sd 0.08, max 0.18). Each view
 * of it (one photo) is normalise(c + a·g/√128) with g standard normal and a per-view noise level
 * a = A_MEDIAN · exp(A_SIGMA · N(0,1)), so two views of one person have cosine ≈ 1/√((1+a₁²)(1+a₂²)): with
 * A_MEDIAN 0.7 and A_SIGMA 0.4, same-person pairs have p5 0.41, median 0.65, p95 0.83, and 8 % of them fall
 * below the 0.45 threshold. That is harder than the fixtures (same-person pairs 0.58–0.93): many true pairs
 * sit just above the threshold, which is where an approximate index loses them. The bench prints both
 * distributions side by side (fixtures embedded by the real pipeline, and these) so the match can be checked.
 *
 * Deterministic (xorshift32 + Box–Muller from a seed), so runs at the same N compare.
 */
export const DIMENSIONS = 128;
export const A_MEDIAN = 0.7;
export const A_SIGMA = 0.4;

export class Xorshift {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 1;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let s = this.state;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    this.state = s;
    return s / 4294967296;
  }

  /** Standard normal (Box–Muller). */
  gaussian(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

/** Scales `v[offset .. offset+d)` to unit length in place. */
function normalise(v: Float32Array, offset = 0, d = DIMENSIONS): void {
  let n = 0;
  for (let k = 0; k < d; k++) n += v[offset + k] * v[offset + k];
  n = Math.sqrt(n);
  for (let k = 0; k < d; k++) v[offset + k] /= n;
}

export interface FaceSet {
  /** count × 128 unit vectors, row i is face i. */
  vectors: Float32Array;
  /** The identity of each row. */
  identities: Int32Array;
  /** The identity centres (identities × 128). */
  centres: Float32Array;
}

/** `count` faces: ceil(count / viewsPerIdentity) identities with `viewsPerIdentity` views each (the last may have fewer). */
export function clusteredFaces(count: number, viewsPerIdentity = 10, seed = 11): FaceSet {
  const random = new Xorshift(seed);
  const identityCount = Math.ceil(count / viewsPerIdentity);
  const centres = new Float32Array(identityCount * DIMENSIONS);
  const vectors = new Float32Array(count * DIMENSIONS);
  const identities = new Int32Array(count);
  for (let id = 0, row = 0; id < identityCount; id++) {
    const c = id * DIMENSIONS;
    for (let k = 0; k < DIMENSIONS; k++) centres[c + k] = random.gaussian();
    normalise(centres, c);
    for (let view = 0; view < viewsPerIdentity && row < count; view++, row++) {
      writeView(vectors, row, centres, id, random);
      identities[row] = id;
    }
  }
  return { vectors, identities, centres };
}

/** One more photo of identity `id` of `set` (a query that has true matches), from its own random stream. */
export function newView(set: FaceSet, id: number, random: Xorshift): Float32Array {
  const out = new Float32Array(DIMENSIONS);
  writeView(out, 0, set.centres, id, random);
  return out;
}

/** A photo of somebody not in the set (a query whose true matches are only chance ones). */
export function stranger(random: Xorshift): Float32Array {
  const centre = new Float32Array(DIMENSIONS);
  for (let k = 0; k < DIMENSIONS; k++) centre[k] = random.gaussian();
  normalise(centre);
  const out = new Float32Array(DIMENSIONS);
  writeView(out, 0, centre, 0, random);
  return out;
}

function writeView(out: Float32Array, row: number, centres: Float32Array, id: number, random: Xorshift): void {
  const a = A_MEDIAN * Math.exp(A_SIGMA * random.gaussian());
  const o = row * DIMENSIONS;
  const c = id * DIMENSIONS;
  for (let k = 0; k < DIMENSIONS; k++) out[o + k] = centres[c + k] + (a * random.gaussian()) / Math.sqrt(DIMENSIONS);
  normalise(out, o);
}

/** Quantiles of same-identity and different-identity cosine similarities among `pairs` sampled pairs of `set`. */
export function similaritySpread(set: FaceSet, viewsPerIdentity: number, samples = 20_000, seed = 5) {
  const random = new Xorshift(seed);
  const rows = set.identities.length;
  const same: number[] = [];
  const other: number[] = [];
  const dot = (i: number, j: number) => {
    let s = 0;
    for (let k = 0; k < DIMENSIONS; k++) s += set.vectors[i * DIMENSIONS + k] * set.vectors[j * DIMENSIONS + k];
    return s;
  };
  for (let t = 0; t < samples; t++) {
    const i = Math.floor(random.next() * rows);
    const first = i - (i % viewsPerIdentity);
    const j = first + Math.floor(random.next() * viewsPerIdentity);
    if (j !== i && j < rows) same.push(dot(i, j));
    const other_ = Math.floor(random.next() * rows);
    if (set.identities[other_] !== set.identities[i]) other.push(dot(i, other_));
  }
  return { same: summary(same), different: summary(other) };
}

/** p5 / median / p95 / max and the share below `threshold`, rounded to 3 digits. */
export function summary(values: number[], threshold = 0.45) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => round3(sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))))] ?? NaN);
  return { pairs: sorted.length, p5: at(0.05), median: at(0.5), p95: at(0.95), max: at(1), belowThreshold: round3(sorted.filter((v) => v < threshold).length / Math.max(1, sorted.length)) };
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
