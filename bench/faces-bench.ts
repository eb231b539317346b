import { FaceMatrix } from '../apps/worker/src/faces/face-matrix';
import { percentile, round } from './stats';

/** One new face against N stored faces in the worker's in-memory index; memory per face. */
export function benchFaceIndex(stored = 100_000, queries = 200) {
  const randomUnit = () => {
    const v = new Float32Array(128);
    let n = 0;
    for (let i = 0; i < 128; i++) {
      v[i] = Math.random() * 2 - 1;
      n += v[i] * v[i];
    }
    return v.map((x) => x / Math.sqrt(n));
  };
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  const matrix = new FaceMatrix(128, stored);
  for (let i = 0; i < stored; i++) matrix.add(i + 1, `face-${i}`, `image-${i % 50_000}`, randomUnit());
  global.gc?.();
  const heapAfter = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  const times: number[] = [];
  let found = 0;
  for (let q = 0; q < queries; q++) {
    const query = randomUnit();
    const started = performance.now();
    found += matrix.search(query, stored + 1, 'none', 0.45).length;
    times.push(performance.now() - started);
  }
  return {
    storedFaces: stored,
    queries,
    searchMsP50: round(percentile(times, 50), 2),
    searchMsP99: round(percentile(times, 99), 2),
    embeddingBytesPerFace: matrix.bytesPerFace,
    measuredBytesPerFace: round((heapAfter - heapBefore) / stored, 0),
    falseMatchesOnRandomVectors: found,
    target: 'search ≤ 20 ms at 100,000 faces',
  };
}
