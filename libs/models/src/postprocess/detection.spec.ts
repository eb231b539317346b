import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { prepareModelInput } from '@app/imaging';
import { InferenceRuntime } from '../inference-runtime';
import { ModelCatalog } from '../model-catalog';
import { ModelExecutor } from '../model-executor';
import { decodeYolox, decodeYunet, iou, nonMaxSuppression } from './detection';

const ROOT = join(__dirname, '..', '..', '..', '..', '..');
const fixture = (name: string) => readFileSync(join(ROOT, 'test', 'fixtures', name));

describe('NMS', () => {
  it('suppresses overlapping boxes of the same group only', () => {
    const a = { score: 0.9, group: 1, box: { x: 0, y: 0, width: 10, height: 10 } };
    const b = { score: 0.8, group: 1, box: { x: 1, y: 1, width: 10, height: 10 } };
    const c = { score: 0.7, group: 2, box: { x: 1, y: 1, width: 10, height: 10 } };
    expect(iou(a.box, b.box)).toBeGreaterThan(0.6);
    expect(nonMaxSuppression([b, a, c], 0.5, (x, y) => x.group === y.group)).toEqual([a, c]);
  });
});

/** The real detectors on real photos, against the verified runs in expected_results.json / MODELS.md. */
describe('detection decoders on the real models', () => {
  let runtime: InferenceRuntime;
  let executor: ModelExecutor;
  let catalog: ModelCatalog;

  beforeAll(async () => {
    catalog = ModelCatalog.load(join(ROOT, 'models'));
    runtime = await InferenceRuntime.start(catalog, { threads: 1, intraOpThreads: 1 });
    executor = new ModelExecutor(catalog, runtime);
  });

  afterAll(async () => {
    await runtime?.close();
  });

  async function prepare(modelName: string, image: string) {
    const model = catalog.get(modelName);
    const input = await prepareModelInput(fixture(image), model.preprocess, { maxPixels: 50_000_000, heic: true });
    const run = await executor.run(model.name, input.tensor, input.geometry);
    return { model, run, geometry: input.geometry, ...model.postprocess };
  }

  async function detect(image: string) {
    const { run, geometry, model, scoreThreshold, iouThreshold } = await prepare('yolox_nano', image);
    return decodeYolox(run.output.output, geometry, model.labelList, scoreThreshold, iouThreshold);
  }

  async function faces(image: string) {
    const { run, geometry, scoreThreshold, iouThreshold } = await prepare('yunet', image);
    return decodeYunet(run.output, geometry, scoreThreshold, iouThreshold);
  }

  it('yolox_nano finds the dog on the beagle photo where MODELS.md puts it', async () => {
    const detections = await detect('dog_beagle_jemma.png');
    const dog = detections.find((d) => d.label === 'dog');
    expect(dog).toBeDefined();
    expect(dog!.score).toBeGreaterThan(0.7);
    // verified: dog 0.807 [71,127,252,349] (x1,y1,x2,y2)
    expect(iou(dog!.box, { x: 71, y: 127, width: 181, height: 222 })).toBeGreaterThan(0.8);
  });

  it('yolox_nano finds two people on faces_obama_biden.jpg and nothing on the castle', async () => {
    expect((await detect('faces_obama_biden.jpg')).filter((d) => d.label === 'person')).toHaveLength(2);
    expect(await detect('castle_image.jpg')).toEqual([]);
  });

  it('yunet finds 2 faces on faces_obama_biden.jpg, 1 on face_obama_1.jpg, 0 on the castle', async () => {
    const pair = await faces('faces_obama_biden.jpg');
    expect(pair).toHaveLength(2);
    // verified largest: [782,50,949,246]
    expect(pair.some((face) => iou(face.box, { x: 782, y: 50, width: 167, height: 196 }) > 0.8)).toBe(true);
    const obama = await faces('face_obama_1.jpg');
    expect(obama).toHaveLength(1);
    expect(iou(obama[0].box, { x: 379, y: 79, width: 223, height: 351 })).toBeGreaterThan(0.85);
    // eyes at about (442,207) and (547,210)
    expect(Math.hypot(obama[0].landmarks[0][0] - 442, obama[0].landmarks[0][1] - 207)).toBeLessThan(8);
    expect(Math.hypot(obama[0].landmarks[1][0] - 547, obama[0].landmarks[1][1] - 210)).toBeLessThan(8);
    expect(await faces('castle_image.jpg')).toEqual([]);
  });
});
