import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** native/faiss-face-index (src/addon.cc): the shapes it takes and gives. */
export interface NativeFacePqIndex {
  addExact(seqs: Float64Array, vectors: Float32Array): Promise<void>;
  compress(subQuantizers: number, trainingFaces: number): Promise<void>;
  add(seqs: Float64Array, vectors: Float32Array): Promise<void>;
  /** k nearest by squared L2 (nearest first); labels are sequence numbers, < 0 for removed faces. */
  search(query: Float32Array, k: number, efSearch: number): { labels: Float64Array; distances: Float32Array };
  remove(seqs: Float64Array): number;
  has(seq: number): boolean;
  save(path: string): Promise<void>;
  /** Clears every link to and from removed faces' nodes; resolves with how many links it cleared. */
  unlinkRemoved(): Promise<number>;
  release(): void;
  /** Empty after release. */
  stats(): { total: number; removed: number; dimensions: number; compressed: boolean; codeSize: number; entryLabel: number };
}

export interface FaissBinding {
  FacePqIndex: {
    new (dimensions: number, connectivity: number, expansionAdd: number): NativeFacePqIndex;
    load(path: string): Promise<NativeFacePqIndex>;
  };
}

/** Where scripts/build-native.mjs writes the addon, relative to the repository (or the image's /app). */
export const FAISS_ADDON = join('native', 'faiss-face-index', 'build', 'faiss_face_index.node');

let cached: FaissBinding | null | undefined;

/**
 * The FAISS binding, found by walking up from this file to the folder holding FAISS_ADDON (the repository,
 * from src/ or dist/; /app in the image); undefined when it was not built (a machine without libfaiss-dev).
 * A built addon that fails to load (missing shared libraries) throws: that is a broken install, not a choice.
 */
export function loadFaissBinding(): FaissBinding | undefined {
  if (cached !== undefined) return cached ?? undefined;
  cached = null;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const path = join(dir, FAISS_ADDON);
    if (existsSync(path)) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(path) as FaissBinding;
      break;
    }
    if (dirname(dir) === dir) break;
  }
  return cached ?? undefined;
}
