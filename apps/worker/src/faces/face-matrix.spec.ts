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

  it('drops removed faces and keeps a re-added face once', () => {
    const m = new FaceMatrix(2);
    m.add(1, 'a', 'img1', unit([1, 0]));
    m.remove(2, [1]);
    expect(m.search(unit([1, 0]), 10, 'x', 0.5)).toEqual([]);
    m.add(3, 'a', 'img1', unit([1, 0]));
    expect(m.search(unit([1, 0]), 10, 'x', 0.5)).toHaveLength(1);
    expect(m.lastSeq).toBe(3);
  });
});
