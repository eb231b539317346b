import { InputGeometry, placement, planInput, planRegion, toImageBox, toImagePoint, toInputPoint } from './input-geometry';
import { preprocessSchema } from './manifest';

const spec = (fields: Record<string, unknown>) => preprocessSchema.parse({ channels: 'BGR', ...fields });

function roundTrips(geometry: InputGeometry, points: [number, number][]): void {
  for (const point of points) {
    const [x, y] = toImagePoint(geometry, toInputPoint(geometry, point));
    expect(x).toBeCloseTo(point[0], 9);
    expect(y).toBeCloseTo(point[1], 9);
  }
}

describe('InputGeometry: image pixels ↔ model pixels', () => {
  it('dynamic letterbox keeps the aspect ratio of a 3:1 panorama, pads only to a multiple of 32 and never enlarges', () => {
    const yunet = spec({ resize: 'letterbox', width: 960, height: 960, padToMultipleOf: 32, enlarge: false });
    const panorama = planInput(3378, 661, yunet);
    expect(panorama.resizedWidth).toBe(960);
    expect(panorama.resizedHeight).toBe(188);
    expect([panorama.inputWidth, panorama.inputHeight]).toEqual([960, 192]);
    expect(panorama.scaleX / panorama.scaleY).toBeCloseTo(1, 2);
    // A face box maps back to the same box, whatever the canvas: square stays square.
    const box = toImageBox(panorama, { x: 100, y: 20, width: 40, height: 40 });
    expect(box.width / box.height).toBeCloseTo(panorama.scaleY / panorama.scaleX, 9);
    roundTrips(panorama, [[0, 0], [3378, 661], [1126.5, 300.25]]);

    const small = planInput(150, 150, yunet);
    expect([small.scaleX, small.inputWidth, small.inputHeight]).toEqual([1, 160, 160]);
  });

  it('fixed letterbox enlarges to fill the box and pads to the full input size', () => {
    const yolox = spec({ resize: 'letterbox', width: 416, height: 416, padValue: 114 });
    const geometry = planInput(200, 100, yolox);
    expect([geometry.resizedWidth, geometry.resizedHeight, geometry.inputWidth, geometry.inputHeight]).toEqual([416, 208, 416, 416]);
    expect(placement(geometry)).toEqual([0, 0]);
  });

  it('centre crop: one scale (by the shorter side, as torchvision), the crop as a negative offset', () => {
    const mobilenet = spec({ resize: 'center-crop', width: 224, height: 224, shorterSide: 256 });
    const geometry = planInput(800, 480, mobilenet);
    expect([geometry.resizedWidth, geometry.resizedHeight, geometry.uniformBy]).toEqual([427, 256, 'height']);
    expect(geometry.scaleX).toBe(geometry.scaleY);
    expect([geometry.offsetX, geometry.offsetY]).toEqual([-101, -16]);
    // The centre of the image lands at the centre of the input, within the half pixel the crop rounds away.
    const [cx, cy] = toInputPoint(geometry, [400, 240]);
    expect(Math.abs(cx - 112)).toBeLessThanOrEqual(0.5);
    expect(cy).toBeCloseTo(112, 9);
    roundTrips(geometry, [[0, 0], [799, 479]]);
  });

  it('stretch: two scales', () => {
    const geometry = planInput(800, 400, spec({ resize: 'stretch', width: 320, height: 320 }));
    expect([geometry.scaleX, geometry.scaleY]).toEqual([0.4, 0.8]);
    roundTrips(geometry, [[10, 10], [800, 400]]);
  });

  it('a region past the image edge: the part inside is placed where the region says, and points map back exactly', () => {
    const geometry = planRegion(1000, 800, { x: -50, y: 700, width: 200, height: 200 }, 160);
    expect(geometry.source).toEqual({ left: 0, top: 700, width: 150, height: 100 });
    expect([geometry.inputWidth, geometry.inputHeight]).toEqual([160, 160]);
    // The image's left edge sits 50 region pixels (40 input pixels) right of the input's left edge.
    expect(placement(geometry)).toEqual([40, 0]);
    const [x, y] = toInputPoint(geometry, [0, 700]);
    expect(x).toBeCloseTo(40, 9);
    expect(y).toBeCloseTo(0, 9);
    roundTrips(geometry, [[0, 700], [149, 799], [75.5, 750]]);
  });
});
