import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, postImage, request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';

const ALL_MODELS = ['mobilenet_v2', 'squeezenet1_1', 'yolox_nano', 'yunet'];
const CLASSIFIERS = ['mobilenet_v2', 'squeezenet1_1'];
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** `found` is `expected` moved by `offset`, each side within ±10 % of the expected size. */
function near(found: Box, expected: Box, offset: [number, number] = [0, 0]): boolean {
  const [x, y] = [expected.x + offset[0], expected.y + offset[1]];
  return (
    Math.abs(found.x - x) <= 0.1 * expected.width &&
    Math.abs(found.y - y) <= 0.1 * expected.height &&
    Math.abs(found.width - expected.width) <= 0.1 * expected.width &&
    Math.abs(found.height - expected.height) <= 0.1 * expected.height
  );
}

/**
 * Photos as people take them (issue 20): every handed file of ../shared/images/outside (copied into
 * test/fixtures/outside) through every route it can reach, with its right value: the JPEG without its EOI marker,
 * the AVIF with major brand mif1, the HEIC, the 3:1 panorama and the small faces in a large canvas; and a JPEG
 * cut at 90 % of its bytes, refused the same way by every model.
 */
describe('photos as people take them (real Redis, real models)', () => {
  let redis: TestRedis;
  let storageDir: string;
  let api: AppProcess;
  let apiWithoutHeic: AppProcess;
  let worker: AppProcess;
  const cut = fixture('castle_image.jpg').subarray(0, Math.floor(fixture('castle_image.jpg').length * 0.9));
  const noEoi = fixture('outside/castle_small_no_eoi.jpg');

  beforeAll(async () => {
    redis = await TestRedis.start();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-outside-'));
    const env = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', FACE_WAIT_MS: '60000', REQUEST_WAIT_MS: '60000' };
    [api, worker, apiWithoutHeic] = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env), AppProcess.start('api', { ...env, HEIC_ENABLED: 'false' })]);
  });

  afterAll(async () => {
    await Promise.all([api?.stop(), worker?.stop(), apiWithoutHeic?.stop()]);
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  const classify = (bytes: Buffer, model: string, type = 'application/octet-stream') =>
    request(`${api.url}/v1/classify?model=${model}`, { method: 'POST', body: multipart({ image: { bytes, filename: 'photo', type } }) });
  const top1 = async (bytes: Buffer, model: string) => {
    const answer = await classify(bytes, model);
    expect(answer.status).toBe(200);
    return answer.body.predictions[0].label as string;
  };

  /** Every model on every image in one analyses request; resolves with each image's finished model views. */
  async function analyse(images: Record<string, Buffer>): Promise<Record<string, Record<string, any>>> {
    const form = multipart({ models: ALL_MODELS.join(',') });
    for (const [name, bytes] of Object.entries(images)) form.append('images', new Blob([bytes]), name);
    const submitted = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    expect(submitted.status).toBe(202);
    const views: Record<string, Record<string, any>> = {};
    for (const [i, name] of Object.keys(images).entries()) {
      const hash = submitted.body.images[i].hash;
      await until(
        async () => {
          const described = await request(`${api.url}/v1/images/${hash}`);
          views[name] = described.body.models;
          return ALL_MODELS.every((model) => ['completed', 'failed'].includes(described.body.models?.[model]?.state));
        },
        120_000,
        `every model on ${name}`,
        200,
      );
    }
    return views;
  }

  it('/v1/classify: each handed file with both classifiers, with its right top-1; the 90 % cut gets 422 from both', async () => {
    for (const model of CLASSIFIERS) {
      // No EOI: the same answer as the file with its marker restored.
      expect(await top1(noEoi, model)).toBe(await top1(Buffer.concat([noEoi, Buffer.from([0xff, 0xd9])]), model));
      // mif1 AVIF: the same answer as its own pixels as PNG.
      const avif = fixture('outside/castle_small_brand_mif1.avif');
      expect(await top1(avif, model)).toBe(await top1(await sharp(avif).png().toBuffer(), model));
      // HEIC: the same answer as the photo saved as JPEG; sent as a raw image/heic body.
      const heic = await request(`${api.url}/v1/classify?model=${model}`, { method: 'POST', headers: { 'content-type': 'image/heic' }, body: fixture('outside/face_obama_1.heic') });
      expect(heic.status).toBe(200);
      expect(heic.body.predictions[0].label).toBe(await top1(fixture('face_obama_1.jpg'), model));
      for (const name of ['outside/obama_biden_panorama_3to1.jpg', 'outside/group_small_faces_2840x1892.jpg']) expect((await classify(fixture(name), model)).status).toBe(200);
      const refused = await classify(cut, model);
      expect(refused.status).toBe(422);
      expect(refused.body.error.code).toBe('IMAGE_DECODE_FAILED');
    }
    expect(await top1(noEoi, 'squeezenet1_1')).toBe('castle');
  });

  it('/v1/analyses with every model: each handed file completes everywhere with its right boxes and faces; the 90 % cut fails everywhere', async () => {
    const views = await analyse({
      noEoi,
      avif: fixture('outside/castle_small_brand_mif1.avif'),
      heic: fixture('outside/face_obama_1.heic'),
      obama: fixture('face_obama_1.jpg'),
      panorama: fixture('outside/obama_biden_panorama_3to1.jpg'),
      pair: fixture('faces_obama_biden.jpg'),
      group: fixture('outside/group_small_faces_2840x1892.jpg'),
      bbt: fixture('faces_group_bbt.jpg'),
      cut,
    });
    for (const name of ['noEoi', 'avif', 'heic', 'panorama', 'group']) for (const model of ALL_MODELS) expect([name, model, views[name][model].state]).toEqual([name, model, 'completed']);
    for (const model of ALL_MODELS) expect(views.cut[model]).toMatchObject({ state: 'failed', error: { code: 'IMAGE_DECODE_FAILED' } });

    expect(views.noEoi.yunet.result.faces).toEqual([]);
    expect(views.avif.yunet.result.faces).toEqual([]);
    // HEIC: the JPEG's top-1, face and person.
    for (const model of CLASSIFIERS) expect(views.heic[model].result.predictions[0].label).toBe(views.obama[model].result.predictions[0].label);
    expect(views.heic.yunet.result.faces).toHaveLength(1);
    expect(near(views.heic.yunet.result.faces[0].box, views.obama.yunet.result.faces[0].box)).toBe(true);
    const person = (objects: any[]) => objects.filter((object) => object.label === 'person').sort((a, b) => a.box.x - b.box.x);
    expect(near(person(views.heic.yolox_nano.result.objects)[0].box, person(views.obama.yolox_nano.result.objects)[0].box)).toBe(true);
    // Panorama and group: the original photo's faces (and the panorama's people) at the paste offset.
    const placed = (found: any[], expected: any[], offset: [number, number]) => {
      expect(found).toHaveLength(expected.length);
      for (const face of expected) expect(found.some((candidate) => near(candidate.box, face.box, offset))).toBe(true);
    };
    placed(views.panorama.yunet.result.faces, views.pair.yunet.result.faces, [1126, 0]);
    placed(person(views.panorama.yolox_nano.result.objects), person(views.pair.yolox_nano.result.objects), [1126, 0]);
    placed(views.group.yunet.result.faces, views.bbt.yunet.result.faces, [1065, 710]);
  });

  it('HEIC_ENABLED=false: HEIC is refused with 415 on every upload route; AVIF still passes', async () => {
    const heic = fixture('outside/face_obama_1.heic');
    for (const response of [
      await postImage(`${apiWithoutHeic.url}/v1/classify`, heic, 'phone.heic'),
      await postImage(`${apiWithoutHeic.url}/v1/faces`, heic, 'phone.heic'),
      await request(`${apiWithoutHeic.url}/v1/analyses`, { method: 'POST', body: multipart({ models: 'yunet', images: { bytes: heic, filename: 'phone.heic' } }) }),
    ]) {
      expect(response.status).toBe(415);
      expect(response.body.error).toMatchObject({ code: 'IMAGE_UNSUPPORTED_FORMAT', message: expect.stringContaining('HEIC_ENABLED=false') });
    }
    expect((await postImage(`${apiWithoutHeic.url}/v1/classify`, fixture('outside/castle_small_brand_mif1.avif'), 'small.avif')).status).toBe(200);
  });

  it('/v1/faces: HEIC, panorama and small-faces photo each match the same faces of the original photos; the others have no face; the 90 % cut gets 422', async () => {
    const submit = (name: string, bytes = fixture(name)) => postImage(`${api.url}/v1/faces`, bytes, name.replace(/.*\//, ''));
    for (const [copy, original, offset] of [
      ['outside/face_obama_1.heic', 'face_obama_1.jpg', [0, 0]],
      ['outside/obama_biden_panorama_3to1.jpg', 'faces_obama_biden.jpg', [1126, 0]],
      ['outside/group_small_faces_2840x1892.jpg', 'faces_group_bbt.jpg', [1065, 710]],
    ] as [string, string, [number, number]][]) {
      const reference = await submit(original);
      expect(reference.status).toBe(200);
      const answer = await submit(copy);
      expect(answer.status).toBe(200);
      expect(answer.body.faces).toHaveLength(reference.body.faces.length);
      for (const face of reference.body.faces) {
        const same = answer.body.faces.find((candidate: any) => near(candidate.box, face.box, offset));
        expect(same).toBeDefined();
        // Matched to that face of the original, and to no other face of it.
        const ofOriginal = same.matches.filter((match: any) => match.imageHash === sha256(fixture(original)));
        expect(ofOriginal).toEqual([expect.objectContaining({ faceId: face.faceId })]);
        expect(ofOriginal[0].similarity).toBeGreaterThanOrEqual(0.8);
      }
    }
    for (const bytes of [noEoi, fixture('outside/castle_small_brand_mif1.avif')]) {
      const answer = await submit('photo', bytes);
      expect(answer.status).toBe(200);
      expect(answer.body.faces).toEqual([]);
    }
    const refused = await submit('cut.jpg', cut);
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('IMAGE_DECODE_FAILED');
  });
});
