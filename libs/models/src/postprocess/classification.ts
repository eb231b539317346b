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

/**
 * The k highest-scoring classes, best first, with their labels; equal scores in index order (as a stable sort
 * would give). One pass keeping the best k (k is at most TOPK_MAX): no sort of every class.
 */
export function topK(probabilities: Float32Array, k: number, labels: string[]): Prediction[] {
  const best: number[] = [];
  for (let index = 0; index < probabilities.length; index++) {
    const value = probabilities[index];
    if (best.length === k && !(value > probabilities[best[k - 1]])) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && value > probabilities[best[at - 1]]) at--;
    if (best.length === k) best.pop();
    best.splice(at, 0, index);
  }
  return best.map((index) => ({ index, label: labels[index] ?? String(index), probability: round(probabilities[index]) }));
}

export function classificationPredictions(scores: Float32Array, activation: 'softmax' | 'none', k: number, labels: string[]): Prediction[] {
  return topK(activation === 'softmax' ? softmax(scores) : scores, k, labels);
}

function round(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}
