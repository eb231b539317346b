import { readFileSync } from 'node:fs';
import { join } from 'node:path';
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
    pipeline = new FacePipeline(catalog, new ModelExecutor(catalog, runtime), { detector: 'yunet', embedder: 'mobilefacenet', minFaceSize: 20, maxPixels: 50_000_000 });
  });

  afterAll(async () => {
    await runtime?.close();
  });

  const largestEmbedding = async (name: string) => {
    const result = await pipeline.run(fixture(name));
    const largest = [...result.faces].sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height)[0];
    expect(largest).toBeDefined();
    return largest.embedding;
  };

  it('reproduces the verified cosine similarities (same person high, different people low)', async () => {
    const [obama1, obama2, biden1, biden2, sheldon1, howard1] = await Promise.all(
      ['face_obama_1.jpg', 'face_obama_2.jpg', 'face_biden_1.jpg', 'face_biden_2.jpg', 'face_crop_sheldon_1.png', 'face_crop_howard_1.png'].map(largestEmbedding),
    );
    expect(cosine(obama1, obama2)).toBeCloseTo(0.754, 1);
    expect(cosine(biden1, biden2)).toBeCloseTo(0.594, 1);
    expect(cosine(obama1, biden1)).toBeLessThan(0.3);
    expect(cosine(obama2, biden2)).toBeLessThan(0.3);
    expect(cosine(sheldon1, howard1)).toBeLessThan(0.3);
    expect(cosine(obama1, obama1)).toBeCloseTo(1, 5);
  });

  it('finds no face on the castle and two on faces_obama_biden.jpg', async () => {
    expect((await pipeline.run(fixture('castle_image.jpg'))).faces).toHaveLength(0);
    expect((await pipeline.run(fixture('faces_obama_biden.jpg'))).faces).toHaveLength(2);
  });
});
