import { uninitializedFloat32Array } from './tensor-memory';

describe('uninitializedFloat32Array', () => {
  it.each([1, 100, 1_024, 150_528, 8 * 150_528])('%i values spanning a buffer of their own (so it can move to the inference thread whole)', (length) => {
    const tensor = uninitializedFloat32Array(length);
    expect(tensor.length).toBe(length);
    expect(tensor.byteOffset).toBe(0);
    expect(tensor.buffer.byteLength).toBe(length * 4);
    tensor.fill(0.5);
    expect(tensor[length - 1]).toBe(0.5);
  });

  it('never shares memory between two arrays', () => {
    const a = uninitializedFloat32Array(10);
    const b = uninitializedFloat32Array(10);
    a.fill(1);
    b.fill(2);
    expect([a[0], b[0]]).toEqual([1, 2]);
  });
});
