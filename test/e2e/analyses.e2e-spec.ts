import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { expectedTop5, fixture } from '../support/fixtures';
import { multipart, request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';
import { setTimeout as sleep } from 'node:timers/promises';

const ALL_MODELS = ['mobilenet_v2', 'squeezenet1_1', 'yolox_nano', 'yunet'];
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Reads a server-sent-event stream to its end (the server closes it when every model is done). */
async function readEvents(url: string, timeoutMs = 60_000): Promise<{ event: string; data: any }[]> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  expect(response.headers.get('content-type')).toContain('text/event-stream');
  const text = await response.text();
  return text
    .split('\n\n')
    // Blocks of comment lines only (": heartbeat") carry no event.
    .filter((block) => /^(event|data):/m.test(block))
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null');
      return { event, data };
    });
}

describe('analysis jobs by content hash (real Redis, real models, two APIs)', () => {
  let redis: TestRedis;
  let storageDir: string;
  let apiA: AppProcess;
  let apiB: AppProcess;
  let worker: AppProcess;

  beforeAll(async () => {
    redis = await TestRedis.start();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-images-'));
    const env = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1' };
    [worker, apiA, apiB] = await Promise.all([AppProcess.start('worker', env), AppProcess.start('api', env), AppProcess.start('api', env)]);
  });

  afterAll(async () => {
    await Promise.all([apiA?.stop(), apiB?.stop(), worker?.stop()]);
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  const analysesStored = (hash: string, model?: string) =>
    worker.logsWith('analysis.stored').filter((line) => line.imageHash === hash && (!model || line.model === model)).length;

  it('three photos × every model: right labels, boxes and faces, one SSE event per model', async () => {
    const names = ['castle_image.jpg', 'dog_beagle_jemma.png', 'faces_obama_biden.jpg'];
    const form = multipart({});
    for (const name of names) form.append('images', new Blob([fixture(name)]), name);
    form.append('models', 'mobilenet_v2,squeezenet1_1');
    form.append('models', 'yolox_nano');
    form.append('models', 'yunet');
    const submitted = await request(`${apiA.url}/v1/analyses`, { method: 'POST', body: form });
    expect(submitted.status).toBe(202);
    expect(submitted.body.images.map((image: any) => image.hash)).toEqual(names.map((name) => sha256(fixture(name))));
    for (const image of submitted.body.images) {
      expect(Object.keys(image.models).sort()).toEqual([...ALL_MODELS].sort());
      for (const status of Object.values<any>(image.models)) expect(status.url).toMatch(new RegExp(`^/v1/images/${image.hash}/results/`));
    }

    const byName: Record<string, any> = {};
    for (const [i, name] of names.entries()) {
      const hash = submitted.body.images[i].hash;
      const events = await readEvents(`${apiB.url}/v1/images/${hash}/events`);
      const results = events.filter((e) => e.event === 'result');
      expect(results.map((e) => e.data.model).sort()).toEqual([...ALL_MODELS].sort());
      expect(events[events.length - 1].event).toBe('done');
      const described = await request(`${apiB.url}/v1/images/${hash}`);
      expect(described.status).toBe(200);
      expect(described.body.image).toMatchObject({ hash, bytes: fixture(name).length, format: name.endsWith('.png') ? 'png' : 'jpeg' });
      byName[name] = described.body.models;
      // The stored bytes come back unchanged, typed by their real format and marked nosniff.
      const content = await fetch(`${apiB.url}/v1/images/${hash}/content`);
      expect(content.headers.get('content-type')).toBe(name.endsWith('.png') ? 'image/png' : 'image/jpeg');
      expect(content.headers.get('x-content-type-options')).toBe('nosniff');
      expect(Buffer.from(await content.arrayBuffer()).equals(fixture(name))).toBe(true);
    }

    for (const model of ['mobilenet_v2', 'squeezenet1_1']) {
      for (const name of ['castle_image.jpg', 'dog_beagle_jemma.png']) {
        expect(byName[name][model].state).toBe('completed');
        expect(byName[name][model].result.predictions[0].label).toBe(expectedTop5(model, name)[0].label);
      }
    }
    const dogObjects = byName['dog_beagle_jemma.png'].yolox_nano.result.objects;
    expect(dogObjects.some((o: any) => o.label === 'dog' && o.score > 0.5)).toBe(true);
    expect(byName['faces_obama_biden.jpg'].yunet.result.faces).toHaveLength(2);
    expect(byName['castle_image.jpg'].yunet.result.faces).toHaveLength(0);
    expect(byName['castle_image.jpg'].yolox_nano.result.objects).toHaveLength(0);

    const one = await request(`${apiA.url}/v1/images/${sha256(fixture('faces_obama_biden.jpg'))}/results/yunet`);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ state: 'completed', model: 'yunet', task: 'face-detection' });
    expect(one.body.result.faces[0].landmarks).toHaveLength(5);
  });

  it('resubmission answers cached: true and runs no inference', async () => {
    const castle = fixture('castle_image.jpg');
    const hash = sha256(castle);
    const before = worker.logsWith('job.started').length;
    const again = await request(`${apiB.url}/v1/analyses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ images: [castle.toString('base64')], models: ALL_MODELS }),
    });
    expect(again.status).toBe(202);
    expect(again.body.images[0].hash).toBe(hash);
    for (const model of ALL_MODELS) expect(again.body.images[0].models[model]).toMatchObject({ state: 'completed', cached: true });
    await sleep(500);
    expect(worker.logsWith('job.started').length).toBe(before);
    expect(analysesStored(hash, 'mobilenet_v2')).toBe(1);
  });

  it('unknown model: 400 listing valid names, nothing stored or queued', async () => {
    const kitten = fixture('cat_kitten_224.png');
    const hash = sha256(kitten);
    const form = multipart({ models: 'mobilenet_v2,resnet50' });
    form.append('images', new Blob([kitten]), 'kitten.png');
    const refused = await request(`${apiA.url}/v1/analyses`, { method: 'POST', body: form });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('UNKNOWN_MODEL');
    expect(refused.body.error.message).toContain('resnet50');
    expect(refused.body.error.details.validModels.sort()).toEqual([...ALL_MODELS].sort());
    expect(existsSync(join(storageDir, 'default', hash.slice(0, 2), hash.slice(2, 4), hash))).toBe(false);
    const client = redis.client();
    try {
      expect(await client.keys(`*${hash}*`)).toEqual([]);
    } finally {
      client.disconnect();
    }
    expect((await request(`${apiA.url}/v1/images/${hash}`)).status).toBe(404);
  });

  it('the same pair submitted at the same moment through two APIs is inferred once', async () => {
    const obama = fixture('face_obama_1.jpg');
    const hash = sha256(obama);
    const submit = (api: AppProcess) => {
      const form = multipart({ models: 'yunet' });
      form.append('images', new Blob([obama]), 'obama.jpg');
      return request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    };
    const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => submit(i % 2 ? apiA : apiB)));
    for (const answer of answers) expect(answer.status).toBe(202);
    const events = await readEvents(`${apiA.url}/v1/images/${hash}/events`);
    expect(events.filter((e) => e.event === 'result')).toHaveLength(1);
    expect(events[0].data.result.faces).toHaveLength(1);
    // the worker's log line may trail the result by a moment: wait for it, then make sure no second one follows
    await worker.waitForLog((line) => line.action === 'analysis.stored' && line.imageHash === hash);
    await sleep(300);
    expect(analysesStored(hash, 'yunet')).toBe(1);
    // The bytes once, and beside them the note of the models asked (ContentStore.noteModels), once.
    expect(readdirSync(join(storageDir, 'default', hash.slice(0, 2), hash.slice(2, 4))).sort()).toEqual([hash, `${hash}.models`]);
  });

  it('a corrupt image fails only its own jobs, with a clear error', async () => {
    const truncated = fixture('castle_image.jpg').subarray(0, 25_000);
    const kitten = fixture('cat_kitten_224.png');
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([truncated]), 'broken.jpg');
    form.append('images', new Blob([kitten]), 'kitten.png');
    const submitted = await request(`${apiA.url}/v1/analyses`, { method: 'POST', body: form });
    expect(submitted.status).toBe(202);
    const [broken, good] = submitted.body.images.map((image: any) => image.hash);
    const brokenEvents = await readEvents(`${apiA.url}/v1/images/${broken}/events`);
    expect(brokenEvents[0].data).toMatchObject({ model: 'mobilenet_v2', state: 'failed', error: { code: 'IMAGE_DECODE_FAILED' } });
    const goodEvents = await readEvents(`${apiA.url}/v1/images/${good}/events`);
    expect(goodEvents[0].data).toMatchObject({ model: 'mobilenet_v2', state: 'completed' });
    expect(goodEvents[0].data.result.predictions[0].label).toBe('tabby');
    const brokenResult = await request(`${apiA.url}/v1/images/${broken}/results/mobilenet_v2`);
    expect(brokenResult.body).toMatchObject({ state: 'failed', error: { code: 'IMAGE_DECODE_FAILED' } });
  });

  it('an expired result is computed again from the stored image', async () => {
    const dog = fixture('dog_beagle_jemma.png');
    const hash = sha256(dog);
    const client = redis.client();
    try {
      expect(await client.del(`iiq:{default}:result:${hash}:mobilenet_v2`)).toBe(1);
    } finally {
      client.disconnect();
    }
    const first = await request(`${apiA.url}/v1/images/${hash}/results/mobilenet_v2`);
    expect([200, 202]).toContain(first.status);
    let result = first;
    await until(async () => result.status === 200 || (result = await request(`${apiA.url}/v1/images/${hash}/results/mobilenet_v2`)).status === 200, 30_000, 'the result computed again');
    expect(result.status).toBe(200);
    expect(result.body.result.predictions[0].label).toBe('beagle');
    await worker.waitForLog(() => analysesStored(hash, 'mobilenet_v2') >= 2);
    expect(analysesStored(hash, 'mobilenet_v2')).toBe(2);
  });

  it('every :hash route refuses a path-traversal id with 400', async () => {
    for (const path of ['/v1/images/..%2F..%2Fetc%2Fpasswd', '/v1/images/..%2F..%2Fetc%2Fpasswd/results/yunet', '/v1/images/..%2F..%2Fetc%2Fpasswd/events', `/v1/images/${'A'.repeat(64)}`]) {
      const response = await request(`${apiA.url}${path}`);
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('INVALID_PARAMETER');
    }
    expect((await request(`${apiA.url}/v1/images/${sha256(Buffer.from('never sent'))}`)).status).toBe(404);
  });
});
