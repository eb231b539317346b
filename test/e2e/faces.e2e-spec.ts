import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { postImage, request } from '../support/http';
import { TestRedis } from '../support/test-redis';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const hashOf = (name: string) => sha256(fixture(name));

/** Face matching with real models on real photos: two APIs and two workers sharing one Redis and image store. */
describe('face matching (real Redis, real models, 2 APIs + 2 workers)', () => {
  let redis: TestRedis;
  let storageDir: string;
  let apis: AppProcess[];
  let workers: AppProcess[];

  beforeAll(async () => {
    redis = await TestRedis.start();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-faces-'));
    const env = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', FACE_WAIT_MS: '30000' };
    const started = await Promise.all([AppProcess.start('api', env), AppProcess.start('api', env), AppProcess.start('worker', env), AppProcess.start('worker', env)]);
    apis = started.slice(0, 2);
    workers = started.slice(2);
  });

  afterAll(async () => {
    await Promise.all([...(apis ?? []), ...(workers ?? [])].map((app) => app.stop()));
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  const submit = (name: string, api = apis[0]) => postImage(`${api.url}/v1/faces`, fixture(name), name);
  const matchedImages = (body: any) => body.faces.flatMap((face: any) => face.matches.map((m: any) => m.imageHash));
  const facesProcessed = () => workers.flatMap((worker) => worker.logsWith('faces.matched'));

  it('castle: no faces, "no matches found"', async () => {
    const response = await submit('castle_image.jpg');
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ imageHash: hashOf('castle_image.jpg'), faces: [], matchedImages: [], message: 'no matches found' });
  });

  it('Obama then Obama: the second matches the first, and the first’s match set grows', async () => {
    const first = await submit('face_obama_1.jpg');
    expect(first.status).toBe(200);
    expect(first.body.faces).toHaveLength(1);
    expect(first.body.message).toBe('no matches found');
    const face = first.body.faces[0];
    expect(face.landmarks).toHaveLength(5);
    expect(face.box.width).toBeGreaterThan(100);

    const second = await submit('face_obama_2.jpg', apis[1]);
    expect(second.status).toBe(200);
    expect(second.body.matchedImages).toEqual([hashOf('face_obama_1.jpg')]);
    expect(second.body.faces[0].matches[0].similarity).toBeGreaterThan(0.6);
    expect(second.body.faces[0].matches[0].faceId).toBe(face.faceId);
    expect(second.body.message).toBeUndefined();

    const grown = await request(`${apis[0].url}/v1/images/${hashOf('face_obama_1.jpg')}/matches`);
    expect(grown.body.matchedImages).toEqual([hashOf('face_obama_2.jpg')]);
  });

  it('Biden then Biden: match each other and not Obama', async () => {
    expect((await submit('face_biden_1.jpg')).body.matchedImages).toEqual([]);
    const second = await submit('face_biden_2.jpg');
    expect(second.body.matchedImages).toEqual([hashOf('face_biden_1.jpg')]);
  });

  it('faces_obama_biden.jpg: two faces, each matched to the right person only', async () => {
    const response = await submit('faces_obama_biden.jpg');
    expect(response.status).toBe(200);
    expect(response.body.faces).toHaveLength(2);
    const [left, right] = [...response.body.faces].sort((a: any, b: any) => a.box.x - b.box.x);
    const obama = [hashOf('face_obama_1.jpg'), hashOf('face_obama_2.jpg')].sort();
    const biden = [hashOf('face_biden_1.jpg'), hashOf('face_biden_2.jpg')].sort();
    expect(left.matches.map((m: any) => m.imageHash).sort()).toEqual(obama);
    expect(right.matches.map((m: any) => m.imageHash).sort()).toEqual(biden);
    expect([...response.body.matchedImages].sort()).toEqual([...obama, ...biden].sort());
  });

  it('a Sheldon crop never matches Howard', async () => {
    expect((await submit('face_crop_howard_1.png')).body.faces).toHaveLength(1);
    const sheldon = await submit('face_crop_sheldon_1.png');
    expect(sheldon.body.faces).toHaveLength(1);
    expect(matchedImages(sheldon.body)).not.toContain(hashOf('face_crop_howard_1.png'));
  });

  it('submitting the same image again answers from stored data without new inference', async () => {
    const before = facesProcessed().length;
    const again = await submit('face_obama_2.jpg', apis[1]);
    expect(again.status).toBe(200);
    expect(again.body.faces).toHaveLength(1);
    // it now also matches the two-person photo that came later
    expect([...again.body.matchedImages].sort()).toEqual([hashOf('face_obama_1.jpg'), hashOf('faces_obama_biden.jpg')].sort());
    expect(facesProcessed().length).toBe(before);
  });

  it('two images of one person submitted at the same moment through two APIs and two workers match each other', async () => {
    // New bytes (a tag appended after the JPEG end marker) make new images of the same person.
    const variant = (name: string, tag: string) => Buffer.concat([fixture(name), Buffer.from(tag)]);
    const one = variant('face_obama_1.jpg', 'concurrent-a');
    const two = variant('face_obama_2.jpg', 'concurrent-b');
    const [first, second] = await Promise.all([postImage(`${apis[0].url}/v1/faces`, one, 'one.jpg'), postImage(`${apis[1].url}/v1/faces`, two, 'two.jpg')]);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    const firstMatches = (await request(`${apis[0].url}/v1/images/${sha256(one)}/matches`)).body.matchedImages;
    const secondMatches = (await request(`${apis[1].url}/v1/images/${sha256(two)}/matches`)).body.matchedImages;
    expect(firstMatches).toContain(sha256(two));
    expect(secondMatches).toContain(sha256(one));
    const processedBy = facesProcessed()
      .filter((line) => line.imageHash === sha256(one) || line.imageHash === sha256(two))
      .map((line) => line.pid);
    expect(processedBy).toHaveLength(2);
  });

  it('DELETE removes the image from every match set, and the index forgets its face', async () => {
    const obama1 = hashOf('face_obama_1.jpg');
    const removed = await request(`${apis[0].url}/v1/images/${obama1}/faces`, { method: 'DELETE' });
    expect(removed.status).toBe(200);
    expect(removed.body.removedFaces).toBe(1);
    for (const name of ['face_obama_2.jpg', 'faces_obama_biden.jpg']) {
      const matches = await request(`${apis[1].url}/v1/images/${hashOf(name)}/matches`);
      expect(matches.body.matchedImages).not.toContain(obama1);
      for (const face of matches.body.faces) expect(face.matches.map((m: any) => m.imageHash)).not.toContain(obama1);
    }
    expect((await request(`${apis[0].url}/v1/images/${obama1}/matches`)).status).toBe(404);
    // a new Obama photo no longer finds the forgotten one
    const fresh = Buffer.concat([fixture('face_obama_2.jpg'), Buffer.from('after-delete')]);
    const response = await postImage(`${apis[0].url}/v1/faces`, fresh, 'fresh.jpg');
    expect(response.body.matchedImages).not.toContain(obama1);
    expect(response.body.matchedImages.length).toBeGreaterThan(0);
  });

  it('refuses bad ids and URL submissions it cannot serve yet, with 4xx', async () => {
    expect((await request(`${apis[0].url}/v1/images/..%2F..%2Fetc%2Fpasswd/matches`)).status).toBe(400);
    expect((await request(`${apis[0].url}/v1/images/..%2F..%2Fetc%2Fpasswd/faces`, { method: 'DELETE' })).status).toBe(400);
    const byUrl = await request(`${apis[0].url}/v1/faces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: 'http://127.0.0.2/x.jpg' }) });
    expect(byUrl.status).toBe(400);
  });
});
