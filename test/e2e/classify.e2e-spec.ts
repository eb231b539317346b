import { AppProcess } from '../support/app-process';
import { expectedTop5, fixture } from '../support/fixtures';
import { multipart, postImage, request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';

/** One API + one worker on the test's own Redis: the synchronous classification path end to end. */
describe('POST /v1/classify (real Redis, real models)', () => {
  let redis: TestRedis;
  let api: AppProcess;
  let worker: AppProcess;
  const castle = fixture('castle_image.jpg');

  beforeAll(async () => {
    redis = await TestRedis.start();
    const env = { REDIS_URL: redis.url, ORT_INTRA_OP_THREADS: '1', MAX_IMAGE_BYTES: String(2 * 1024 * 1024), MAX_IMAGE_PIXELS: '20000000' };
    [worker, api] = await Promise.all([AppProcess.start('worker', env), AppProcess.start('api', env)]);
  });

  afterAll(async () => {
    await Promise.all([api?.stop(), worker?.stop()]);
    await redis?.stop();
  });

  const url = (path: string) => `${api.url}${path}`;

  /**
   * SqueezeNet (fp16) reproduces the recorded run: every probability within 0.05. MobileNetV2-int8 does not,
   * across CPUs: its output moves in quantisation steps and ONNX Runtime's int8 kernels differ by instruction
   * set. The same code gives castle 0.727 on an AVX2 machine and 0.697 on an AVX-512-VNNI one (0.758 recorded),
   * with the runner-up moving more. For it: the same top label within 0.1, and every recorded label above 0.1
   * still in the top 5.
   */
  function expectMatchesReference(model: string, image: string, predictions: { index: number; label: string; probability: number }[]) {
    const reference = expectedTop5(model, image);
    expect(predictions[0].label).toBe(reference[0].label);
    if (model === 'mobilenet_v2') {
      expect(Math.abs(predictions[0].probability - reference[0].prob)).toBeLessThanOrEqual(0.1);
      for (const expected of reference.filter((r) => r.prob >= 0.1)) expect(predictions.map((p) => p.index)).toContain(expected.index);
    } else {
      for (const expected of reference) {
        const got = predictions.find((p) => p.index === expected.index);
        if (expected.prob >= 0.01) expect(Math.abs((got?.probability ?? 0) - expected.prob)).toBeLessThanOrEqual(0.05);
      }
    }
    for (let i = 1; i < predictions.length; i++) expect(predictions[i - 1].probability).toBeGreaterThanOrEqual(predictions[i].probability);
  }

  const inputForms: [string, (model: string) => Promise<{ status: number; body: any }>][] = [
    ['multipart', (model) => request(url(`/v1/classify?model=${model}`), { method: 'POST', body: multipart({ image: { bytes: castle, filename: 'castle.jpg', type: 'image/jpeg' } }) })],
    ['multipart with model as a field', (model) => request(url('/v1/classify'), { method: 'POST', body: multipart({ model, image: { bytes: castle, filename: 'castle.jpg' } }) })],
    ['raw image/jpeg body', (model) => request(url(`/v1/classify?model=${model}`), { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle })],
    ['JSON base64', (model) => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: castle.toString('base64'), model }) })],
  ];

  for (const model of ['mobilenet_v2', 'squeezenet1_1']) {
    for (const [form, send] of inputForms) {
      it(`${model} via ${form}: castle first, probabilities match the verified run`, async () => {
        const response = await send(model);
        expect(response.status).toBe(200);
        expect(response.body.model).toBe(model);
        expect(response.body.predictions).toHaveLength(5);
        expectMatchesReference(model, 'castle_image.jpg', response.body.predictions);
        expect(response.body.timings.totalMs).toBeGreaterThan(0);
        expect(typeof response.body.id).toBe('string');
      });
    }
  }

  it('classifies other fixtures (RGBA PNG, RGB PNG) right with both models', async () => {
    for (const model of ['mobilenet_v2', 'squeezenet1_1']) {
      for (const image of ['cat_kitten_224.png', 'dog_beagle_jemma.png']) {
        const response = await request(url(`/v1/classify?model=${model}`), { method: 'POST', headers: { 'content-type': 'image/png' }, body: fixture(image) });
        expect(response.status).toBe(200);
        expectMatchesReference(model, image, response.body.predictions);
      }
    }
  });

  it('takes a raw body under the generic or old labels clients send (the format is read from the bytes)', async () => {
    for (const type of ['application/octet-stream', 'image/jpg', 'image/pjpeg', 'image/png']) {
      const response = await request(url('/v1/classify?topk=1'), { method: 'POST', headers: { 'content-type': type }, body: castle });
      expect([type, response.status, response.body.predictions?.[0]?.label]).toEqual([type, 200, 'castle']);
    }
  });

  it('honours topk and defaults to the mobilenet_v2 model', async () => {
    const response = await request(url('/v1/classify?topk=12'), { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle });
    expect(response.status).toBe(200);
    expect(response.body.model).toBe('mobilenet_v2');
    expect(response.body.predictions).toHaveLength(12);
  });

  it('POST /predict answers in the original client shape', async () => {
    const response = await postImage(url('/predict'), castle, 'castle.jpg');
    expect(response.status).toBe(200);
    expect(response.body.success).toBe(true);
    expect(response.body.predictions).toHaveLength(5);
    expect(Object.keys(response.body.predictions[0]).sort()).toEqual(['label', 'probability']);
    expect(response.body.predictions[0].label).toBe('castle');
  });

  it('POST /predict errors keep the original client shape: success false, plus our error body', async () => {
    // The original client does `r = requests.post(...).json(); if r["success"]: ...`: every answer needs "success".
    for (const [bytes, status, code] of [
      [Buffer.from('not an image at all, just text'), 415, 'IMAGE_UNSUPPORTED_FORMAT'],
      [castle.subarray(0, 20_000), 422, 'IMAGE_DECODE_FAILED'],
    ] as const) {
      const refused = await postImage(url('/predict'), bytes as Buffer, 'x.jpg');
      expect(refused.status).toBe(status);
      expect(refused.body).toEqual({ success: false, error: { code, message: expect.any(String) } });
    }
    // Other routes keep the plain error body.
    expect((await postImage(url('/v1/classify'), Buffer.from('text'), 'x.jpg')).body).not.toHaveProperty('success');
  });

  it('GET /v1/jobs/:id returns the finished job with its result', async () => {
    const classified = await postImage(url('/v1/classify'), castle);
    const job = await request(url(`/v1/jobs/${classified.body.id}`));
    expect(job.status).toBe(200);
    expect(job.body.state).toBe('completed');
    expect(job.body.result.predictions[0].label).toBe('castle');
    expect(job.body.result.workerId).toContain(String(worker.pid));
  });

  it('the server-made request id travels from API to worker logs; a client id is kept beside it, never instead of it', async () => {
    const send = () => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'image/jpeg', 'x-request-id': 'trace-me-123' }, body: castle });
    const [response, again] = [await send(), await send()];
    expect(response.status).toBe(200);
    const requestId = response.headers.get('x-request-id')!;
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    // The same client id twice: two requests, two server ids, so one client cannot pose as another request.
    expect(again.headers.get('x-request-id')).not.toBe(requestId);
    expect(response.headers.get('x-client-request-id')).toBe('trace-me-123');
    const started = await worker.waitForLog((line) => line.action === 'job.completed' && line.requestId === requestId);
    expect(started.jobId).toBe(response.body.id);
    expect(api.logs.some((line) => line.action === 'job.enqueued' && line.requestId === requestId && line.jobId === response.body.id)).toBe(true);
    const access = await api.waitForLog((line) => line.action === 'http.request' && line.requestId === requestId);
    expect(access.clientRequestId).toBe('trace-me-123');
    for (const line of [...api.logs, ...worker.logs].filter((l) => l.action)) {
      expect(line).toEqual(expect.objectContaining({ service: expect.any(String), script: 'main.js', time: expect.any(String) }));
    }
  });

  it('GET /v1/models lists every manifest model as loaded by the worker', async () => {
    // The heartbeat runs every few seconds.
    let body: any;
    await until(async () => (body = (await request(url('/v1/models'))).body).models.every((m: any) => m.loaded), 30_000, 'every model listed as loaded');
    expect(body.models.map((m: any) => m.name).sort()).toEqual(['mobilefacenet', 'mobilenet_v2', 'squeezenet1_1', 'yolox_nano', 'yunet']);
    expect(body.models.find((m: any) => m.name === 'yolox_nano').task).toBe('object-detection');
    expect(body.models.every((m: any) => m.loaded && m.sha256.length === 64)).toBe(true);
    expect(body.workers).toHaveLength(1);
  });

  it('serves Swagger UI and an OpenAPI document naming every route', async () => {
    expect((await request(url('/docs'))).status).toBe(200);
    const openapi = await request(url('/docs/json'));
    expect(Object.keys(openapi.body.paths).sort()).toEqual(['/health/live', '/health/ready', '/metrics', '/predict', '/v1/analyses', '/v1/classify', '/v1/faces', '/v1/images/{hash}', '/v1/images/{hash}/content', '/v1/images/{hash}/events', '/v1/images/{hash}/faces', '/v1/images/{hash}/matches', '/v1/images/{hash}/results/{model}', '/v1/jobs/{id}', '/v1/models']);
    expect(openapi.body.paths['/v1/classify'].post.responses['400']).toBeDefined();
  });

  describe('bad input gets a clear 4xx and the next good request still works', () => {
    const jpeg = { 'content-type': 'image/jpeg' };
    const bigPng = (() => {
      // A valid PNG header declaring 40000×40000 pixels: refused from the header, never decoded.
      const { crc32 } = require('node:zlib') as { crc32?: (data: Buffer) => number };
      const chunk = (type: string, data: Buffer) => {
        const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
        const crc = Buffer.alloc(4);
        crc.writeUInt32BE((crc32 ? crc32(body) : 0) >>> 0);
        const length = Buffer.alloc(4);
        length.writeUInt32BE(data.length);
        return Buffer.concat([length, body, crc]);
      };
      const ihdr = Buffer.alloc(13);
      ihdr.writeUInt32BE(40000, 0);
      ihdr.writeUInt32BE(40000, 4);
      ihdr.set([8, 2, 0, 0, 0], 8);
      return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.alloc(16)), chunk('IEND', Buffer.alloc(0))]);
    })();

    const cases: [string, () => Promise<{ status: number; body: any }>, number, string][] = [
      ['empty body', () => request(url('/v1/classify'), { method: 'POST', headers: jpeg, body: Buffer.alloc(0) }), 400, 'IMAGE_EMPTY'],
      ['text named .jpg', () => postImage(url('/v1/classify'), Buffer.from('this is not an image at all, just text'), 'notes.jpg'), 415, 'IMAGE_UNSUPPORTED_FORMAT'],
      ['SVG', () => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'image/png' }, body: '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>' }), 415, 'IMAGE_UNSUPPORTED_FORMAT'],
      ['unsupported content type', () => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/xml' }, body: '<a/>' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['over the size limit (raw)', () => request(url('/v1/classify'), { method: 'POST', headers: jpeg, body: Buffer.concat([castle.subarray(0, 3), Buffer.alloc(3 * 1024 * 1024)]) }), 413, 'IMAGE_TOO_LARGE'],
      ['over the size limit (multipart)', () => postImage(url('/v1/classify'), Buffer.concat([castle, Buffer.alloc(3 * 1024 * 1024)])), 413, 'IMAGE_TOO_LARGE'],
      ['over the size limit (base64)', () => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: Buffer.alloc(2 * 1024 * 1024 + 10).toString('base64') }) }), 413, 'IMAGE_TOO_LARGE'],
      ['pixel count over the limit', () => postImage(url('/v1/classify'), bigPng, 'huge.png'), 422, 'IMAGE_TOO_MANY_PIXELS'],
      ['truncated JPEG', () => request(url('/v1/classify'), { method: 'POST', headers: jpeg, body: castle.subarray(0, 20_000) }), 422, 'IMAGE_DECODE_FAILED'],
      ['unknown model', () => request(url('/v1/classify?model=resnet50'), { method: 'POST', headers: jpeg, body: castle }), 400, 'UNKNOWN_MODEL'],
      ['a detector asked to classify', () => request(url('/v1/classify?model=yunet'), { method: 'POST', headers: jpeg, body: castle }), 400, 'MODEL_TASK_MISMATCH'],
      ['topk 0', () => request(url('/v1/classify?topk=0'), { method: 'POST', headers: jpeg, body: castle }), 400, 'INVALID_PARAMETER'],
      ['topk 21', () => request(url('/v1/classify?topk=21'), { method: 'POST', headers: jpeg, body: castle }), 400, 'INVALID_PARAMETER'],
      ['topk not a number', () => request(url('/v1/classify?topk=five'), { method: 'POST', headers: jpeg, body: castle }), 400, 'INVALID_PARAMETER'],
      ['base64 garbage', () => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"image":"%%%not-base64%%%"}' }), 400, 'INVALID_BASE64'],
      ['malformed JSON', () => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"image":' }), 400, 'BAD_REQUEST'],
      ['JSON without image', () => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"mobilenet_v2"}' }), 400, 'IMAGE_MISSING'],
      ['multipart without the image field', () => request(url('/v1/classify'), { method: 'POST', body: multipart({ model: 'mobilenet_v2' }) }), 400, 'IMAGE_MISSING'],
      ['unknown job id', () => request(url('/v1/jobs/does-not-exist')), 404, 'JOB_NOT_FOUND'],
      // A 413 has the code of a 413 (it was BAD_REQUEST, a 400's code), and the message names the limit.
      ['21 multipart fields', () => request(url('/v1/classify'), { method: 'POST', body: multipart(Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`field${i}`, 'x']))) }), 413, 'PAYLOAD_TOO_LARGE'],
      ['21 multipart fields (analyses)', () => request(url('/v1/analyses'), { method: 'POST', body: multipart(Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`field${i}`, 'x']))) }), 413, 'PAYLOAD_TOO_LARGE'],
    ];

    for (const [name, send, status, code] of cases) {
      it(`${name} → ${status} ${code}`, async () => {
        const response = await send();
        expect(response.status).toBe(status);
        expect(response.body.error.code).toBe(code);
        expect(response.body.error.message.length).toBeGreaterThan(5);
        if (name.startsWith('21 multipart fields')) expect(response.body.error.message).toMatch(/form fields.*at most 20/);
        const good = await request(url('/v1/classify?topk=1'), { method: 'POST', headers: jpeg, body: castle });
        expect(good.status).toBe(200);
        expect(good.body.predictions[0].label).toBe('castle');
      });
    }

    it('answers a newcomer\'s wrong body and a hostile URL in the API\'s error shape, saying what to send and never echoing the request back', async () => {
      // curl --data-binary without -H sends a form: the answer says so (it said "JSON body needs …").
      const form = await request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: castle });
      expect([form.status, form.body.error.code]).toEqual([400, 'IMAGE_MISSING']);
      expect(form.body.error.message).toMatch(/a raw body \(content-type image\/jpeg.*this body is a form/);
      const xml = await request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/xml' }, body: '<a/>' });
      expect(xml.body.error.message).toMatch(/multipart\/form-data.*application\/octet-stream/);
      // A malformed %-escape and an over-long path segment never reach a route: Fastify's own answers (its error
      // shape, no request id, the 5 KB URL quoted back) are replaced.
      for (const [path, status] of [['/v1/images/%zz', 400], [`/v1/jobs/${'a'.repeat(5000)}`, 414]] as const) {
        const refused = await request(url(path));
        expect([refused.status, refused.body.error?.code, refused.headers.get('x-request-id')?.length]).toEqual([status, 'BAD_REQUEST', expect.any(Number)]);
        expect(JSON.stringify(refused.body).length).toBeLessThan(200);
      }
      const longModel = await request(url(`/v1/classify?model=${'x'.repeat(7000)}`), { method: 'POST', headers: jpeg, body: castle });
      expect([longModel.status, longModel.body.error.code]).toEqual([400, 'UNKNOWN_MODEL']);
      expect(longModel.body.error.message).toContain('(7000 characters)');
      expect(JSON.stringify(longModel.body).length).toBeLessThan(600);
    });

    it('the processes are still up after all of it', () => {
      expect(api.exited).toBe(false);
      expect(worker.exited).toBe(false);
    });
  });
});
