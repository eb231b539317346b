import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { heicDecoder } from '@app/imaging';
import { InferenceRuntime, ModelCatalog, ModelExecutor } from '@app/models';
import { cosine, FacePipeline } from './face-pipeline';

const ROOT = join(__dirname, '..', '..', '..', '..', '..');
const fixture = (name: string) => readFileSync(join(ROOT, 'test', 'fixtures', name));

/** The real detector and embedder on real photos, against MODELS.md's verified similarities. */
describe('FacePipeline on the real models', () => {
  let runtime: InferenceRuntime;
  let pipeline: FacePipeline;

  beforeAll(async () => {
    const catalog = ModelCatalog.load(join(ROOT, 'models'));
    runtime = await InferenceRuntime.start(catalog, { threads: 1, intraOpThreads: 1 });
    pipeline = new FacePipeline(catalog, new ModelExecutor(catalog, runtime), { detector: 'yunet', embedder: 'mobilefacenet', minFaceSize: 20, limits: { maxPixels: 50_000_000, heic: true } });
  });

  afterAll(async () => {
    await runtime?.close();
    await heicDecoder.close();
  });

  const largestEmbedding = async (name: string) => {
    const result = await pipeline.run(fixture(name));
    const largest = [...result.faces].sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height)[0];
    expect(largest).toBeDefined();
    return largest.embedding;
  };

  it('keeps the documented FACE_MATCH_THRESHOLD margins: same person ≥ 0.69, different people ≤ 0.18 (0.45 is 0.24 / 0.27 away)', async () => {
    const [obama1, obama2, biden1, biden2, sheldon1, sheldon2, howard1] = await Promise.all(
      ['face_obama_1.jpg', 'face_obama_2.jpg', 'face_biden_1.jpg', 'face_biden_2.jpg', 'face_crop_sheldon_1.png', 'face_crop_sheldon_2.png', 'face_crop_howard_1.png'].map(largestEmbedding),
    );
    // Measured with this pipeline (README "Face matching"): 0.783, 0.719, 0.710.
    expect(cosine(obama1, obama2)).toBeCloseTo(0.78, 1);
    expect(cosine(biden1, biden2)).toBeCloseTo(0.72, 1);
    expect(cosine(sheldon1, sheldon2)).toBeCloseTo(0.71, 1);
    for (const [a, b] of [[obama1, biden1], [obama2, biden2], [obama1, biden2], [obama2, biden1], [sheldon1, howard1], [sheldon2, howard1], [obama1, sheldon1]]) {
      expect(cosine(a, b)).toBeLessThan(0.2);
    }
    expect(cosine(obama1, obama1)).toBeCloseTo(1, 5);
  });

  /** Each reference face found again in `image` at its box moved by `offset` (±10 % of its size), and its similarity to it. */
  async function sameFacesAt(image: Buffer, reference: string, offset: [number, number]) {
    const [found, original] = [(await pipeline.run(image)).faces, (await pipeline.run(fixture(reference))).faces];
    expect(found).toHaveLength(original.length);
    return original.map((face) => {
      const expected = { ...face.box, x: face.box.x + offset[0], y: face.box.y + offset[1] };
      const match = found.find((candidate) => Math.abs(candidate.box.x - expected.x) <= 0.1 * expected.width && Math.abs(candidate.box.y - expected.y) <= 0.1 * expected.height);
      expect(match).toBeDefined();
      expect(Math.abs(match!.box.width - expected.width)).toBeLessThanOrEqual(0.1 * expected.width);
      expect(Math.abs(match!.box.height - expected.height)).toBeLessThanOrEqual(0.1 * expected.height);
      return cosine(match!.embedding, face.embedding);
    });
  }

  it('panorama (faces_obama_biden.jpg unscaled in a 3:1 canvas): both faces, at the original boxes moved by (1126, 0), each the same face', async () => {
    const similarities = await sameFacesAt(fixture('outside/obama_biden_panorama_3to1.jpg'), 'faces_obama_biden.jpg', [1126, 0]);
    expect(similarities).toHaveLength(2);
    similarities.forEach((similarity) => expect(similarity).toBeGreaterThanOrEqual(0.8));
  });

  it('small faces in a large photo (faces_group_bbt.jpg unscaled in 2840×1892): all six, at the original boxes moved by (1065, 710), each the same face', async () => {
    const similarities = await sameFacesAt(fixture('outside/group_small_faces_2840x1892.jpg'), 'faces_group_bbt.jpg', [1065, 710]);
    expect(similarities).toHaveLength(6);
    similarities.forEach((similarity) => expect(similarity).toBeGreaterThanOrEqual(0.8));
  });

  it('HEIC and a JPEG without its end-of-image marker: the face of the same photo as JPEG, same box, same person', async () => {
    const jpeg = fixture('face_obama_1.jpg');
    for (const copy of [fixture('outside/face_obama_1.heic'), jpeg.subarray(0, jpeg.length - 2)]) {
      const [similarity] = await sameFacesAt(copy, 'face_obama_1.jpg', [0, 0]);
      expect(similarity).toBeGreaterThanOrEqual(0.9);
    }
  });

  it('finds no face on the castle and two on faces_obama_biden.jpg', async () => {
    expect((await pipeline.run(fixture('castle_image.jpg'))).faces).toHaveLength(0);
    expect((await pipeline.run(fixture('faces_obama_biden.jpg'))).faces).toHaveLength(2);
  });
});
