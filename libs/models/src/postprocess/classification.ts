import type { Prediction } from '@app/contracts';

/** Numerically stable softmax. */
export function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const value of logits) if (value > max) max = value;
  const out = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** The k highest-scoring classes, best first, with their labels. */
export function topK(probabilities: Float32Array, k: number, labels: string[]): Prediction[] {
  const indices = Array.from(probabilities.keys());
  indices.sort((a, b) => probabilities[b] - probabilities[a]);
  return indices.slice(0, k).map((index) => ({ index, label: labels[index] ?? String(index), probability: round(probabilities[index]) }));
}

export function classificationPredictions(scores: Float32Array, activation: 'softmax' | 'none', k: number, labels: string[]): Prediction[] {
  return topK(activation === 'softmax' ? softmax(scores) : scores, k, labels);
}

function round(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}
