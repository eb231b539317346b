import { float16ToFloat32Array, float32ToFloat16Array, fromFloat16Bits, toFloat16Bits } from './float16';

describe('float16 conversion', () => {
  it('encodes known values exactly', () => {
    expect(toFloat16Bits(0)).toBe(0x0000);
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-2)).toBe(0xc000);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN)))).toBe(true);
  });

  it('round-trips the caffe-style input range within half precision', () => {
    const values = Float32Array.from([-123.68, -103.939, 0.5, 131.061, 151.221, 0.0001]);
    const back = float16ToFloat32Array(float32ToFloat16Array(values));
    values.forEach((value, i) => expect(Math.abs(back[i] - value)).toBeLessThanOrEqual(Math.abs(value) * 2 ** -11 + 1e-7));
  });
});
