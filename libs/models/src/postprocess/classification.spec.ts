import { classificationPredictions, softmax, topK } from './classification';

describe('classification post-processing', () => {
  it('softmax sums to one and keeps order, even for large logits', () => {
    const out = softmax(Float32Array.from([1000, 1001, 999]));
    expect(out.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    expect(out[1]).toBeGreaterThan(out[0]);
    expect(out[0]).toBeGreaterThan(out[2]);
  });

  it('topK sorts by probability and names labels', () => {
    const predictions = topK(Float32Array.from([0.1, 0.6, 0.3]), 2, ['a', 'b', 'c']);
    expect(predictions).toEqual([
      { index: 1, label: 'b', probability: 0.6 },
      { index: 2, label: 'c', probability: 0.3 },
    ]);
  });

  it('applies softmax only for logits', () => {
    const probs = Float32Array.from([0.2, 0.8]);
    expect(classificationPredictions(probs, 'none', 1, ['x', 'y'])[0].probability).toBeCloseTo(0.8);
    expect(classificationPredictions(probs, 'softmax', 1, ['x', 'y'])[0].probability).toBeCloseTo(Math.exp(0.8) / (Math.exp(0.2) + Math.exp(0.8)));
  });
});
