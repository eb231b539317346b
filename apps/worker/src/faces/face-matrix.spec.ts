import { clusteredFaces, Xorshift } from '../../../../bench/face-identities';
import { FaceMatrix } from './face-matrix';

const unit = (values: number[]) => {
  const v = Float32Array.from(values);
  const n = Math.hypot(...values);
  return v.map((x) => x / n);
};

describe('FaceMatrix', () => {
  it('matches only earlier faces of other images at or above the threshold', () => {
    const m = new FaceMatrix(3, 2);
    m.add(1, 'a', 'img1', unit([1, 0, 0]));
    m.add(2, 'b', 'img2', unit([0.9, 0.1, 0]));
    m.add(3, 'c', 'img3', unit([0, 1, 0]));
    m.add(4, 'd', 'img4', unit([1, 0.05, 0]));
    expect(m.size).toBe(4);
    const found = m.search(unit([1, 0.05, 0]), 4, 'img4', 0.9);
    expect(found.map((f) => f.faceId)).toEqual(['a', 'b']);
    // the same image never matches itself; faces at or after beforeSeq are not seen
    expect(m.search(unit([1, 0, 0]), 2, 'img1', 0.9)).toEqual([]);
  });

  it('drops removed faces, and refuses a face out of sequence order', () => {
    const m = new FaceMatrix(2);
    m.add(1, 'a', 'img1', unit([1, 0]));
    expect(m.remove([1, 7])).toBe(1);
    expect(m.search(unit([1, 0]), 10, 'x', 0.5)).toEqual([]);
    expect(m.size).toBe(0);
    m.add(3, 'a', 'img1', unit([1, 0]));
    expect(m.search(unit([1, 0]), 10, 'x', 0.5)).toHaveLength(1);
    expect(() => m.add(2, 'b', 'img2', unit([0, 1]))).toThrow(/not after/);
  });

  it('takes the oldest faces off the front: those seen long enough ago, and any beyond the size it may keep', () => {
    const m = new FaceMatrix(2, 2);
    for (let seq = 1; seq <= 6; seq++) m.add(seq, `f${seq}`, `img${seq}`, unit([1, seq]), seq * 100);
    m.remove([2]);
    // seen at or before 300: seqs 1–3 (2 was removed: not returned, but taken off)
    const first = m.takeOldest(300, 10, 100)!;
    expect(Array.from(first.seqs)).toEqual([1, 3]);
    expect(first.upToSeq).toBe(3);
    expect(Array.from(first.vectors.subarray(2, 4))).toEqual(Array.from(unit([1, 3])));
    expect(m.size).toBe(3);
    // nothing is due by time, but at most one may stay
    const second = m.takeOldest(0, 1, 100)!;
    expect(Array.from(second.seqs)).toEqual([4, 5]);
    expect(m.takeOldest(0, 1, 100)).toBeUndefined();
    expect(m.search(unit([1, 6]), Infinity, 'x', 0.99).map((f) => f.faceId)).toEqual(['f6']);
    // and the limit per call holds
    m.add(7, 'f7', 'img7', unit([1, 7]), 0);
    expect(Array.from(m.takeOldest(Infinity, 0, 1)!.seqs)).toEqual([6]);
  });

  it("answers exactly as the scalar scan, to the bit: faces near the threshold, more matches than the pre-filter's first k (widened), removed faces, beforeSeq, a threshold at or below 0, a non-finite entry", () => {
    // 2,000 faces of 20 identities (100 views each): a query matches far more than 64 faces, and many sit near 0.45.
    const set = clusteredFaces(2000, 100, 7);
    const simd = new FaceMatrix(128);
    const scalar = new FaceMatrix(128, 1024, { scalar: true });
    for (let i = 0; i < 2000; i++) {
      const embedding = set.vectors.slice(i * 128, (i + 1) * 128);
      if (i === 1500) embedding[3] = Number.NaN;
      for (const m of [simd, scalar]) m.add(i + 1, `f${i + 1}`, `img${i % 300}`, embedding);
    }
    const removed = Array.from({ length: 200 }, (_, i) => 1 + i * 7);
    expect(simd.remove(removed)).toBe(scalar.remove(removed));
    let compared = 0;
    for (const [query, beforeSeq, threshold] of [
      [0, Infinity, 0.45], [1, Infinity, 0.3], [2, 1200, 0.45], [3, Infinity, 0.6], [4, Infinity, 0], [5, 900, -1], [6, Infinity, 0.9999],
    ] as const) {
      const q = set.vectors.slice(query * 128, (query + 1) * 128);
      const expected = scalar.search(q, beforeSeq, 'img7', threshold);
      expect(simd.search(q, beforeSeq, 'img7', threshold)).toEqual(expected);
      compared += expected.length;
    }
    // Widening was needed: several queries had well over 64 answers.
    expect(compared).toBeGreaterThan(1000);
  });

  it('answers as the scalar scan for vectors far from unit length and for a query with an Infinity (the pre-filter is not trusted then)', () => {
    // Deterministic pseudo-random vectors of norm ~1000: usearch's float32 distance (1 − dot) is off by ~0.06 there.
    const random = new Xorshift(12345);
    const big = () => Float32Array.from({ length: 128 }, () => (random.next() - 0.5) * 300);
    const simd = new FaceMatrix(128);
    const scalar = new FaceMatrix(128, 1024, { scalar: true });
    const rows = Array.from({ length: 200 }, big);
    rows.forEach((row, i) => [simd, scalar].forEach((m) => m.add(i + 1, `f${i + 1}`, `img${i + 1}`, row)));
    const q = big();
    // Thresholds exactly at each row's exact similarity: the scalar scan returns that row (>=).
    for (const row of rows.slice(0, 50)) {
      const threshold = scalar.search(q, Infinity, '', -Infinity).find((m) => m.faceId === `f${rows.indexOf(row) + 1}`)!.similarity;
      expect(simd.search(q, Infinity, '', threshold)).toEqual(scalar.search(q, Infinity, '', threshold));
    }
    // A query with an Infinity: rows with a 0 there give NaN (0·∞), the others ±Infinity.
    const flat = new FaceMatrix(8);
    const flatScalar = new FaceMatrix(8, 1024, { scalar: true });
    for (let i = 0; i < 200; i++) {
      const row = Float32Array.from({ length: 8 }, (_, k) => (k === 0 ? (i % 3 === 0 ? 0 : 1) : 0.1));
      for (const m of [flat, flatScalar]) m.add(i + 1, `f${i + 1}`, `img${i + 1}`, row);
    }
    const infinite = new Float32Array(8);
    infinite[0] = Infinity;
    const expected = flatScalar.search(infinite, Infinity, '', 0.5);
    expect(expected.length).toBeGreaterThan(100);
    expect(flat.search(infinite, Infinity, '', 0.5)).toEqual(expected);
  });
});
