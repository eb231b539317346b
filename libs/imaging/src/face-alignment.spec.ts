import { alignFaceTensor, ARCFACE_TEMPLATE, estimateSimilarity } from './face-alignment';

const apply = (t: { a: number; b: number; tx: number; ty: number }, [x, y]: [number, number]): [number, number] => [t.a * x - t.b * y + t.tx, t.b * x + t.a * y + t.ty];

describe('face alignment', () => {
  it('recovers a known rotation + scale + translation exactly', () => {
    const angle = 0.3;
    const scale = 2.5;
    const truth = { a: scale * Math.cos(angle), b: scale * Math.sin(angle), tx: 40, ty: -12 };
    const from: [number, number][] = [[10, 20], [50, 22], [30, 40], [15, 60], [45, 61]];
    const to = from.map((p) => apply(truth, p));
    const estimated = estimateSimilarity(from, to);
    expect(estimated.a).toBeCloseTo(truth.a, 9);
    expect(estimated.b).toBeCloseTo(truth.b, 9);
    expect(estimated.tx).toBeCloseTo(truth.tx, 9);
    expect(estimated.ty).toBeCloseTo(truth.ty, 9);
  });

  it('maps landmarks onto the template, sampling the right pixels in BGR order', () => {
    // A 224×224 image, red on the left half and blue on the right, with landmarks at twice the template.
    const width = 224;
    const height = 224;
    const data = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[(y * width + x) * 3 + (x < 112 ? 0 : 2)] = 255;
    const landmarks = ARCFACE_TEMPLATE.map(([x, y]) => [x * 2, y * 2] as [number, number]);
    const tensor = alignFaceTensor({ data, width, height }, landmarks);
    const plane = 112 * 112;
    const at = (channel: number, x: number, y: number) => tensor[channel * plane + y * 112 + x];
    // left half is red: R channel (index 2) high, B channel (index 0) low
    expect(at(2, 20, 50)).toBeCloseTo(1, 5);
    expect(at(0, 20, 50)).toBeCloseTo(-1, 5);
    expect(at(0, 90, 50)).toBeCloseTo(1, 5);
  });
});
