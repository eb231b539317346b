import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { hostileFiles } from '../support/hostile-corpus';
import { multipart, rawHttp, request } from '../support/http';
import { sampleRss, until } from '../support/load';
import { TestRedis } from '../support/test-redis';

type Answer = { status: number; body: any; head?: string };

/**
 * Every hostile input gets a 4xx with a code and a readable message, both processes stay up with bounded
 * memory, and the next good request is still answered right. The corpus goes to every upload route.
 */
describe('fault: hostile input corpus', () => {
  const MB = 1024 * 1024;
  let redis: TestRedis;
  let api: AppProcess;
  let worker: AppProcess;
  let rss: ReturnType<typeof sampleRss>;
  const castle = fixture('castle_image.jpg');
  const tried: string[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    [api, worker] = await Promise.all([AppProcess.start('api', { REDIS_URL: redis.url }), AppProcess.start('worker', { REDIS_URL: redis.url })]);
    rss = sampleRss({ api: api.pid, worker: worker.pid });
    // Something stored before the attack, to check afterwards that nothing stored was lost.
    const analysis = await request(url('/v1/analyses'), { method: 'POST', body: multipart({ images: { bytes: castle, filename: 'castle.jpg' }, models: 'mobilenet_v2' }) });
    storedHash = analysis.body.images[0].hash;
    expect((await settledResult(storedHash, 'mobilenet_v2')).state).toBe('completed');
    const faces = await request(url('/v1/faces'), { method: 'POST', body: multipart({ image: { bytes: fixture('face_obama_1.jpg'), filename: 'obama.jpg' } }) });
    expect(faces.status).toBe(200);
    storedFaceImage = faces.body.imageHash;
  });
  let storedHash: string;
  let storedFaceImage: string;

  afterAll(async () => {
    rss?.stop();
    await Promise.all([api?.stop(), worker?.stop()]);
    await redis?.stop();
  });

  const url = (path: string) => `${api.url}${path}`;

  /** The answer is a clear refusal, and a good request right after it is still answered right. */
  async function expectRefusedThenHealthy(name: string, answer: Answer): Promise<void> {
    tried.push(`${name}: ${answer.status} ${answer.body?.error?.code}`);
    expect({ name, status: answer.status >= 400 && answer.status < 500 }).toEqual({ name, status: true });
    expect(typeof answer.body?.error?.code).toBe('string');
    expect(String(answer.body?.error?.message).length).toBeGreaterThan(10);
    const good = await request(url('/v1/classify?topk=1'), { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle });
    expect(good.status).toBe(200);
    expect(good.body.predictions[0].label).toBe('castle');
  }

  const uploads: [string, (file: { name: string; bytes: Buffer }) => Promise<Answer>][] = [
    ['classify multipart', (file) => request(url('/v1/classify'), { method: 'POST', body: multipart({ image: { bytes: file.bytes, filename: file.name } }) })],
    ['classify raw body', (file) => request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': file.name.endsWith('.png') ? 'image/png' : 'image/jpeg' }, body: file.bytes })],
    ['faces multipart', (file) => request(url('/v1/faces'), { method: 'POST', body: multipart({ image: { bytes: file.bytes, filename: file.name } }) })],
    ['analyses multipart', (file) => request(url('/v1/analyses'), { method: 'POST', body: multipart({ images: { bytes: file.bytes, filename: file.name }, models: 'mobilenet_v2,yunet' }) })],
  ];

  const imageFiles = hostileFiles().filter((file) => !file.name.endsWith('.json'));
  for (const file of imageFiles) {
    for (const [route, send] of uploads) {
      it(`${file.name} (${file.attack}) → ${route}: refused`, async () => {
        let answer = await send(file);
        if (route.startsWith('analyses') && answer.status === 202) {
          // An analysis takes images whose header is sound and reports each pair later: a file that only
          // fails to decode (truncated, bad CRC) must end as a failed result with a clear error, not a 4xx now.
          const settled = await settledResult(answer.body.images[0].hash, 'mobilenet_v2');
          answer = settled.state === 'failed' ? { status: 422, body: { error: settled.error } } : { status: 200, body: settled };
        }
        await expectRefusedThenHealthy(`${file.name} → ${route}`, answer);
      });
    }
  }

  for (const file of hostileFiles().filter((f) => f.name.endsWith('.json'))) {
    for (const path of ['/v1/classify', '/v1/analyses', '/v1/faces']) {
      it(`${file.name} (${file.attack}) → ${path}: refused`, async () => {
        await expectRefusedThenHealthy(`${file.name} → ${path}`, await request(url(path), { method: 'POST', headers: { 'content-type': 'application/json' }, body: file.bytes }));
      });
    }
  }

  it('50 MB bodies (raw, multipart, JSON) are refused while streaming, not buffered', async () => {
    const big = Buffer.concat([castle.subarray(0, 3), Buffer.alloc(50 * MB, 0x41)]);
    const raw = await rawHttp(api.port!, `POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: ${big.length}\r\nConnection: close`, big);
    expect(raw.status).toBe(413);
    await expectRefusedThenHealthy('50 MB raw', raw);

    const boundary = 'hostileboundary';
    const multipartBody = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`), big, Buffer.from(`\r\n--${boundary}--\r\n`)]);
    const viaMultipart = await rawHttp(api.port!, `POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${multipartBody.length}\r\nConnection: close`, multipartBody);
    expect(viaMultipart.status).toBe(413);
    await expectRefusedThenHealthy('50 MB multipart', viaMultipart);

    const json = Buffer.from(JSON.stringify({ images: [big.toString('base64')] }));
    const viaJson = await rawHttp(api.port!, `POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\nConnection: close`, json);
    expect(viaJson.status).toBe(413);
    await expectRefusedThenHealthy('50 MB JSON', viaJson);
  });

  it('multipart with 1,000 parts is refused', async () => {
    const form = multipart({});
    for (let i = 0; i < 999; i++) form.append(`field${i}`, 'x');
    form.append('image', new Blob([castle]), 'castle.jpg');
    await expectRefusedThenHealthy('1000-part multipart → classify', await request(url('/v1/classify'), { method: 'POST', body: form }));
    const many = multipart({ models: 'mobilenet_v2' });
    for (let i = 0; i < 1000; i++) many.append('images', new Blob([castle]), `castle${i}.jpg`);
    // 100 MB: refused at file 17, and the connection is closed rather than the rest read, so the answer is read
    // while sending (as curl does; fetch would fail writing into the closed connection).
    const encoded = new Request('http://127.0.0.1/', { method: 'POST', body: many });
    const body = Buffer.from(await encoded.arrayBuffer());
    const refused = await rawHttp(api.port!, `POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${encoded.headers.get('content-type')}\r\nContent-Length: ${body.length}`, body);
    await expectRefusedThenHealthy('1000 files → analyses', refused);
  });

  it('malformed multipart bodies get 400 on every upload route, never 500', async () => {
    const part = (boundary: string) => Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="castle.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`), castle]);
    const cases: [string, string, Buffer][] = [
      ['no boundary', 'multipart/form-data', castle],
      ['empty boundary', 'multipart/form-data; boundary=', castle],
      ['boundary not in the body', 'multipart/form-data; boundary=zzz', castle],
      ['boundary longer than 256 bytes', `multipart/form-data; boundary=${'b'.repeat(300)}`, part('b'.repeat(300))],
      ['no closing boundary', 'multipart/form-data; boundary=cut', part('cut')],
      ['cut in the middle of the part', 'multipart/form-data; boundary=half', part('half').subarray(0, 2000)],
    ];
    for (const path of ['/v1/classify', '/predict', '/v1/faces', '/v1/analyses']) {
      for (const [name, type, body] of cases) {
        const answer = await rawHttp(api.port!, `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\nConnection: close`, body);
        expect({ path, name, status: answer.status }).toEqual({ path, name, status: 400 });
      }
    }
    await expectRefusedThenHealthy('malformed multipart', await rawHttp(api.port!, `POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=zzz\r\nContent-Length: ${castle.length}\r\nConnection: close`, castle));
    expect(api.exited).toBe(false);
  });

  it('a face search naming its image two ways at once, or a parameter that is an object, is refused, not answered some other way', async () => {
    const both = await request(url('/v1/faces'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: 'http://127.0.0.1:9/x.jpg', imageHash: 'a'.repeat(64) }) });
    expect(both.status).toBe(400);
    expect(both.body.error.message).toContain('"url" and "imageHash"');
    const objectModel = await request(url('/v1/classify'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: castle.toString('base64'), model: { a: 1 } }) });
    expect(objectModel.status).toBe(400);
    expect(objectModel.body.error).toMatchObject({ code: 'INVALID_PARAMETER', message: '"model" must be a string or a number, got object' });
    await expectRefusedThenHealthy('image and imageHash → faces', await request(url('/v1/faces'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: castle.toString('base64'), imageHash: 'a'.repeat(64) }) }));
  });

  it('unknown models are refused before anything is stored', async () => {
    await expectRefusedThenHealthy('unknown model → classify', await request(url('/v1/classify?model=../../models/x'), { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle }));
    const form = multipart({ images: { bytes: castle, filename: 'castle.jpg' }, models: 'mobilenet_v2,resnet9000' });
    await expectRefusedThenHealthy('unknown model → analyses', await request(url('/v1/analyses'), { method: 'POST', body: form }));
  });

  describe('path traversal on every :hash route', () => {
    const hashes = ['..%2F..%2Fetc%2Fpasswd', '%2E%2E%2F%2E%2E%2Fetc%2Fpasswd', '..%5C..%5Cwindows', 'a'.repeat(64) + '%00', 'A'.repeat(64)];
    const routes: [string, (hash: string) => string][] = [
      ['GET', (h) => `/v1/images/${h}`],
      ['GET', (h) => `/v1/images/${h}/results/mobilenet_v2`],
      ['GET', (h) => `/v1/images/${h}/events`],
      ['GET', (h) => `/v1/images/${h}/content`],
      ['GET', (h) => `/v1/images/${h}/matches`],
      ['DELETE', (h) => `/v1/images/${h}/faces`],
    ];
    for (const [method, path] of routes) {
      it(`${method} ${path(':hash')}`, async () => {
        for (const hash of hashes) {
          const answer = await request(url(path(hash)), { method });
          expect({ hash, status: answer.status }).toEqual({ hash, status: 400 });
          await expectRefusedThenHealthy(`${method} ${path(hash)}`, answer);
        }
        // Unnormalised dots, as a hostile client (not fetch) sends them: no route, and never a file.
        const raw = await rawHttp(api.port!, `${method} ${path('../../../../etc/passwd')} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close`);
        expect(raw.status).toBeGreaterThanOrEqual(400);
        expect(raw.status).toBeLessThan(500);
        expect(JSON.stringify(raw.body)).not.toContain('root:');
      });
    }
  });

  describe('header injection', () => {
    it('CR/LF inside a request header is refused by the parser', async () => {
      const answer = await rawHttp(api.port!, `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: abc\rSet-Cookie: injected=1\r\nConnection: close`);
      expect(answer.status).toBe(400);
      expect(answer.head.toLowerCase()).not.toContain('injected');
      tried.push('CR inside a header');
    });

    it('CR/LF smuggled through the query, a field and a file name never reaches a response header', async () => {
      const viaQuery = await request(url('/v1/classify?model=mobilenet_v2%0d%0aSet-Cookie:%20injected=1'), { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle });
      expect(viaQuery.headers.get('set-cookie')).toBeNull();
      await expectRefusedThenHealthy('CRLF in ?model', viaQuery);

      const boundary = 'injectionboundary';
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg\r\nSet-Cookie: injected=1"\r\nContent-Type: image/jpeg\r\n\r\n`),
        castle,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const viaFilename = await rawHttp(api.port!, `POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${body.length}\r\nConnection: close`, body);
      expect(viaFilename.head.toLowerCase()).not.toContain('injected');
      tried.push('CRLF in a multipart file name');

      const hugeHeader = await rawHttp(api.port!, `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ${'a'.repeat(64 * 1024)}\r\nConnection: close`);
      expect(hugeHeader.status).toBe(431);
      tried.push('64 kB header');
    });
  });

  it('after all of it: both processes up, memory bounded, nothing stored before was lost', async () => {
    expect(api.exited).toBe(false);
    expect(worker.exited).toBe(false);
    const stored = await request(url(`/v1/images/${storedHash}/results/mobilenet_v2`));
    expect(stored.body.result.predictions[0].label).toBe('castle');
    const matches = await request(url(`/v1/images/${storedFaceImage}/matches`));
    expect(matches.status).toBe(200);
    expect(matches.body.faces).toHaveLength(1);
    const peaks = rss.stop();
    // The bomb alone would need 2.7 GB decoded and the 50 MB bodies 50 MB each if buffered: peaks far below say neither happened.
    expect(peaks.api).toBeLessThan(400 * MB);
    expect(peaks.worker).toBeLessThan(800 * MB);
    console.log(tried.join('\n'));
    console.log(`hostile input: ${tried.length} hostile requests, all refused with a 4xx and followed by a right answer; peak RSS api ${(peaks.api / MB).toFixed(0)} MB, worker ${(peaks.worker / MB).toFixed(0)} MB`);
  });

  /** The model's result for the image once it has completed or failed (the test fails after 30 s otherwise). */
  async function settledResult(hash: string, model: string): Promise<any> {
    let body: any;
    await until(
      async () => {
        body = (await request(url(`/v1/images/${hash}/results/${model}`))).body;
        return body?.state === 'completed' || body?.state === 'failed';
      },
      30_000,
      `the ${model} result of ${hash}`,
      100,
    );
    return body;
  }
});
