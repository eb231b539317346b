import { createServer, get as httpGet, Server } from 'node:http';
import { AddressInfo, connect } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, postImage, rawHttp, request } from '../support/http';
import { sampleRss, until } from '../support/load';
import { TestRedis } from '../support/test-redis';

const MB = 1024 * 1024;
const castle = fixture('castle_image.jpg');

/** Writes `head` then up to `body.length` bytes as fast as the socket takes them; resolves with the answer's status line and how much was written before it. */
function uploadUntilAnswered(port: number, head: string, body: Buffer, timeoutMs = 60_000): Promise<{ status: number; writtenBeforeAnswer: number; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let written = 0;
    let answered = false;
    let status = 0;
    let writtenBeforeAnswer = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms (${written} bytes written)`));
    }, timeoutMs);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      if (answered) resolve({ status, writtenBeforeAnswer, closed });
      else reject(new Error(`connection ended without an answer after ${written} bytes`));
    };
    socket.on('data', (chunk) => {
      if (!answered) {
        answered = true;
        writtenBeforeAnswer = written;
        status = Number(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString('latin1'))?.[1] ?? 0);
      }
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => undefined);
    socket.write(head);
    void (async () => {
      for (let offset = 0; offset < body.length && !socket.destroyed; offset += 256 * 1024) {
        const chunk = body.subarray(offset, offset + 256 * 1024);
        if (!socket.write(chunk)) await new Promise((done) => socket.once('drain', done).once('close', done));
        written += chunk.length;
      }
    })();
  });
}

/** The hardening findings of the tenants issue, each against the real API (and a worker where it needs one). */
describe('hardening: limits, addresses, time and what is left behind', () => {
  let redis: TestRedis;
  let storageDir: string;
  const apps: AppProcess[] = [];
  const start = async (kind: 'api' | 'worker', env: Record<string, string>) => {
    const app = await AppProcess.start(kind, { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', ...env });
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    redis = await TestRedis.start();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-hardening-'));
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  describe('URL intake holds a bounded number of bytes, whatever the number of URLs and requests', () => {
    let images: Server;
    let imageUrl: string;
    let served = 0;

    beforeAll(async () => {
      // A real PNG padded to 9.5 MB (decoders ignore bytes after IEND): every URL is a full-size image.
      const big = Buffer.concat([fixture('cat_kitten_224.png'), Buffer.alloc(9.5 * MB - fixture('cat_kitten_224.png').length, 7)]);
      images = createServer((_request, response) => {
        served++;
        response.writeHead(200, { 'content-type': 'image/png', 'content-length': big.length });
        response.end(big);
      });
      await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
      imageUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}/kitten.png`;
    });

    afterAll(() => new Promise<void>((resolve) => images.close(() => resolve())));

    it('more URLs than MAX_URLS_PER_REQUEST: 400, nothing fetched', async () => {
      const api = await start('api', { QUEUE_PREFIX: 'urlcap', FETCH_ALLOW_HOSTS: '127.0.0.1' });
      const before = served;
      const refused = await request(`${api.url}/v1/analyses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls: Array(9).fill(imageUrl), models: ['mobilenet_v2'] }) });
      expect(refused.status).toBe(400);
      expect(refused.body.error.message).toContain('MAX_URLS_PER_REQUEST');
      expect(served).toBe(before);
    });

    it('8 requests × 8 URLs of 9.5 MB at once: all accepted, API RSS stays bounded', async () => {
      const api = await start('api', { QUEUE_PREFIX: 'urlmem', FETCH_ALLOW_HOSTS: '127.0.0.1', MAX_IMAGE_BYTES: String(10 * MB) });
      const rss = sampleRss({ api: api.pid }, 50);
      const answers = await Promise.all(
        Array.from({ length: 8 }, () =>
          request(`${api.url}/v1/analyses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls: Array(8).fill(imageUrl), models: ['mobilenet_v2'] }) }),
        ),
      );
      const peak = rss.stop().api;
      expect(answers.map((answer) => answer.status)).toEqual(Array(8).fill(202));
      console.log(`URL intake: 64 fetches of 9.5 MB through 8 requests; API peak RSS ${Math.round(peak / MB)} MB`);
      // 64 × 9.5 MB = 608 MB passed through; the 64 MB budget holds six images at a time.
      expect(peak).toBeLessThan(400 * MB);
    });
  });

  it('with API keys on, a body without a valid key is refused (401) before it is read, and such refusals are rate limited', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'bodygate', API_KEYS: 'acme:acme-key', RATE_LIMIT_MAX: '3' });
    const json = Buffer.from(JSON.stringify({ images: ['A'.repeat(30 * MB)], models: ['mobilenet_v2'] }));
    const head = (key: string) => `POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${json.length}${key}\r\n\r\n`;
    for (const key of ['', '\r\nx-api-key: wrong-key']) {
      const answer = await uploadUntilAnswered(api.port!, head(key), json);
      expect(answer.status).toBe(401);
      expect(answer.writtenBeforeAnswer).toBeLessThan(8 * MB);
      expect(answer.closed).toBe(true);
    }
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg', 'x-api-key': `guess-${i}` }, body: castle })).status);
    expect(statuses).toEqual([401, 429, 429]);
  });

  it('bodies read into memory hold the upload budget: 40 concurrent 9.5 MB uploads keep the API bounded, each answered', async () => {
    await start('worker', { QUEUE_PREFIX: 'bodybudget' });
    const api = await start('api', { QUEUE_PREFIX: 'bodybudget', MAX_IMAGE_BYTES: String(10 * MB), API_KEYS: 'acme:acme-key,globex:globex-key' });
    const big = Buffer.concat([fixture('cat_kitten_224.png'), Buffer.alloc(9.5 * MB - fixture('cat_kitten_224.png').length, 7)]);
    const rss = sampleRss({ api: api.pid }, 50);
    const send = (i: number) =>
      i % 2 === 0
        ? request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/png', 'x-api-key': 'acme-key' }, body: big })
        : request(`${api.url}/v1/faces`, { method: 'POST', headers: { 'x-api-key': 'acme-key' }, body: multipart({ image: { bytes: big, filename: 'big.png' } }) });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => send(i)));
    const peak = rss.stop().api;
    const statuses = answers.map((answer) => answer.status);
    console.log(`upload budget: 40 × 9.5 MB from one tenant: ${statuses.filter((s) => s === 200).length} answered, ${statuses.filter((s) => s === 503).length} told to retry (503); API peak RSS ${Math.round(peak / MB)} MB`);
    expect(statuses.every((status) => status === 200 || status === 503)).toBe(true);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThan(0);
    expect(answers.filter((answer) => answer.status === 503).every((answer) => answer.headers.get('retry-after') === '2')).toBe(true);
    // One tenant holds at most half the budget: another tenant is still served meanwhile.
    expect((await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg', 'x-api-key': 'globex-key' }, body: castle })).status).toBe(200);
    expect(peak).toBeLessThan(450 * MB);
  });

  it('erasure racing an upload of the same image: one of them wins whole (never metadata without bytes)', async () => {
    await start('worker', { QUEUE_PREFIX: 'eraserace' });
    const api = await start('api', { QUEUE_PREFIX: 'eraserace' });
    const dog = fixture('dog_beagle_jemma.png');
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([dog]), 'dog.png');
    const hash = (await request(`${api.url}/v1/analyses`, { method: 'POST', body: form })).body.images[0].hash;
    await until(async () => (await request(`${api.url}/v1/images/${hash}/results/mobilenet_v2`)).status === 200, 30_000, 'the first analysis');

    // The same image again, then a second file that arrives slowly; the erasure lands while it streams.
    const boundary = 'raceboundary';
    const part = (name: string, bytes: Buffer) => Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="${name}"\r\nContent-Type: image/png\r\n\r\n`), bytes, Buffer.from('\r\n')]);
    const slowFile = fixture('cat_kitten_224.png');
    const body = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="models"\r\n\r\nmobilenet_v2\r\n`), part('dog.png', dog), part('kitten.png', slowFile), Buffer.from(`--${boundary}--\r\n`)]);
    const cut = body.length - slowFile.length;
    const socket = connect(api.port!, '127.0.0.1');
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
    });
    socket.write(`POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
    socket.write(body.subarray(0, cut));
    // Until the API has staged the dog and begun the kitten's file: the erasure then lands mid-upload.
    const incoming = join(storageDir, 'default', '.incoming');
    await until(() => existsSync(incoming) && readdirSync(incoming).filter((name) => name.endsWith('.tmp')).length >= 2, 10_000, 'the upload to be staging its second file');
    const erased = await request(`${api.url}/v1/images/${hash}`, { method: 'DELETE' });
    expect(erased.status).toBe(200);
    socket.write(body.subarray(cut));
    expect(await answer).toMatch(/^HTTP\/1\.1 202/);

    // The upload came after the erasure: the image is back whole — bytes, metadata, a fresh result.
    expect((await request(`${api.url}/v1/images/${hash}/content`)).status).toBe(200);
    await until(async () => (await request(`${api.url}/v1/images/${hash}/results/mobilenet_v2`)).status === 200, 30_000, 'the new analysis');
    expect((await request(`${api.url}/v1/images/${hash}/results/mobilenet_v2`)).body.state).toBe('completed');
  });

  it('a client that declares a huge body and sends it slowly holds at most half the upload budget: other tenants are served meanwhile', async () => {
    await start('worker', { QUEUE_PREFIX: 'hog' });
    const api = await start('api', { QUEUE_PREFIX: 'hog', API_KEYS: 'hog:hog-key,fair:fair-key' });
    // Two requests that each declare the whole JSON limit (32 MB) and send nothing more.
    const hogs = [0, 1].map(() => {
      const socket = connect(api.port!, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(`POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: hog-key\r\nContent-Type: application/json\r\nContent-Length: ${32 * MB}\r\n\r\n{"image":"`);
      return socket;
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (const [route, send] of [
        ['raw classify', () => request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg', 'x-api-key': 'fair-key' }, body: castle })],
        ['multipart faces', () => request(`${api.url}/v1/faces`, { method: 'POST', headers: { 'x-api-key': 'fair-key' }, body: multipart({ image: { bytes: castle, filename: 'c.jpg' } }) })],
        ['JSON classify', () => request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': 'fair-key' }, body: JSON.stringify({ image: castle.toString('base64') }) })],
      ] as const) {
        const answer = await send();
        expect([route, answer.status, answer.body?.error?.message]).toEqual([route, 200, undefined]);
      }
    } finally {
      hogs.forEach((socket) => socket.destroy());
    }
  });

  it('GET /v1/jobs/:id looks up classify job ids only: ids derived from an image are not even looked up', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'jobids' });
    for (const id of ['an-0123456789abcdef0123456789abcdef', 'faces-0123456789abcdef0123456789abcdef', 'not-a-uuid']) {
      const answer = await request(`${api.url}/v1/jobs/${id}`);
      expect(answer.status).toBe(404);
      expect(answer.body.error.code).toBe('JOB_NOT_FOUND');
    }
  });

  it('headers too large: 431 in the API’s error shape', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'bigheader' });
    const answer = await rawHttp(api.port!, `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(64 * 1024)}`);
    expect(answer.status).toBe(431);
    expect(answer.body).toEqual({ error: { code: 'BAD_REQUEST', message: expect.stringContaining('headers') } });
  });

  it('without API keys, rotating X-Forwarded-For or made-up keys does not escape the rate limit (unless TRUST_PROXY names the proxy)', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'xff', RATE_LIMIT_MAX: '3' });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      statuses.push((await request(`${api.url}/v1/models`, { headers: { 'x-forwarded-for': `203.0.113.${i}`, 'x-api-key': `junk-${i}` } })).status);
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
    const proxied = await start('api', { QUEUE_PREFIX: 'xff-trusted', RATE_LIMIT_MAX: '3', TRUST_PROXY: '127.0.0.1' });
    for (let i = 0; i < 6; i++) expect((await request(`${proxied.url}/v1/models`, { headers: { 'x-forwarded-for': `203.0.113.${i}` } })).status).toBe(200);
  });

  it('wrong API keys count against the address: guessing keys is rate limited too', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'guess', API_KEYS: 'real-key', RATE_LIMIT_MAX: '3' });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await request(`${api.url}/v1/models`, { headers: { 'x-api-key': `guess-${i}` } })).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    expect((await request(`${api.url}/v1/models`, { headers: { 'x-api-key': 'real-key' } })).status).toBe(200);
  });

  it('admin Basic auth: wrong passwords sent all at once are compared at most ADMIN_LOGIN_MAX_FAILURES times', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'adminburst', ADMIN_PASSWORD: 'right-pass', ADMIN_LOGIN_MAX_FAILURES: '5' });
    const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` });
    const statuses = (await Promise.all(Array.from({ length: 60 }, (_, i) => request(`${api.url}/admin/queues`, { headers: basic(`wrong-${i}`) })))).map((answer) => answer.status);
    expect(statuses.filter((status) => status === 401)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(55);
  });

  it('admin Basic auth: after ADMIN_LOGIN_MAX_FAILURES wrong passwords the address is refused with 429, even with the right one', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'adminlimit', ADMIN_PASSWORD: 'right-pass', ADMIN_LOGIN_MAX_FAILURES: '5' });
    const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` });
    expect((await request(`${api.url}/admin/queues`, { headers: basic('right-pass') })).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await request(`${api.url}/admin/queues`, { headers: basic(`wrong-${i}`) })).status).toBe(401);
    const blocked = await request(`${api.url}/admin/queues`, { headers: basic('right-pass') });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('a 200 MB multipart upload is answered 413 and closed at the limit, not read to the end', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'bigmultipart', MAX_IMAGE_BYTES: String(2 * MB) });
    const boundary = 'bigboundary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`),
      castle.subarray(0, 3),
      Buffer.alloc(200 * MB, 0x41),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    for (const path of ['/v1/classify', '/v1/analyses']) {
      const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${body.length}\r\n\r\n`;
      const answer = await uploadUntilAnswered(api.port!, head, body);
      expect([path, answer.status]).toEqual([path, 413]);
      // Answered near the 2 MB limit (socket buffers hold a few MB more), and the connection is closed.
      expect(answer.writtenBeforeAnswer).toBeLessThan(40 * MB);
      expect(answer.closed).toBe(true);
    }
    expect((await request(`${api.url}/health/live`)).status).toBe(200);
  });

  it('a classify job that fails for good leaves no image bytes in Redis', async () => {
    await start('worker', { QUEUE_PREFIX: 'failedblob' });
    const api = await start('api', { QUEUE_PREFIX: 'failedblob' });
    const truncated = castle.subarray(0, 20_000);
    const refused = await postImage(`${api.url}/v1/classify`, truncated);
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('IMAGE_DECODE_FAILED');
    const client = redis.client();
    try {
      await until(async () => (await client.keys('failedblob:blob:*')).length === 0, 5_000, 'the failed job’s bytes to be deleted');
    } finally {
      client.disconnect();
    }
  });

  it('GET /v1/images/:hash/results/<embedder> is refused with the same 400 as POST /v1/analyses, nothing queued', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'embedder' });
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([castle]), 'castle.jpg');
    const submitted = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    const hash = submitted.body.images[0].hash;
    const viaAnalyses = await request(`${api.url}/v1/analyses`, { method: 'POST', body: multipart({ images: { bytes: castle, filename: 'c.jpg' }, models: 'mobilefacenet' }) });
    const viaResults = await request(`${api.url}/v1/images/${hash}/results/mobilefacenet`);
    expect(viaResults.status).toBe(400);
    expect(viaResults.body.error.code).toBe(viaAnalyses.body.error.code);
    expect(viaResults.body.error.code).toBe('UNKNOWN_MODEL');
    expect((await request(`${api.url}/v1/images/${hash}`)).body.models).not.toHaveProperty('mobilefacenet');
  });

  it('server-sent events: the head and a first comment arrive at once, before any result exists', async () => {
    // No worker: the analysis stays queued, so no result event can come.
    const api = await start('api', { QUEUE_PREFIX: 'ssehead' });
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([castle]), 'castle.jpg');
    const hash = (await request(`${api.url}/v1/analyses`, { method: 'POST', body: form })).body.images[0].hash;
    const controller = new AbortController();
    const response = await fetch(`${api.url}/v1/images/${hash}/events`, { signal: AbortSignal.any([controller.signal, AbortSignal.timeout(10_000)]) });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const first = await response.body!.getReader().read();
    expect(Buffer.from(first.value!).toString()).toMatch(/^: /);
    controller.abort();
  });

  it('event streams are capped per tenant (SSE_MAX_PER_TENANT): the next is 429 with Retry-After, other tenants still stream, a closed stream frees its slot', async () => {
    const api = await start('api', { QUEUE_PREFIX: 'ssecap', API_KEYS: 'acme:acme-key,globex:globex-key', SSE_MAX_PER_TENANT: '2' });
    // No worker: the analyses stay pending, so their streams stay open.
    const submit = async (key: string) => {
      const form = multipart({ models: 'mobilenet_v2' });
      form.append('images', new Blob([castle]), 'castle.jpg');
      return (await request(`${api.url}/v1/analyses`, { method: 'POST', headers: { 'x-api-key': key }, body: form })).body.images[0].hash as string;
    };
    const [acmeHash, globexHash] = [await submit('acme-key'), await submit('globex-key')];
    const open = (hash: string, key: string) =>
      new Promise<{ status: number; retryAfter?: string; close: () => void }>((resolve, reject) => {
        const call = httpGet(`${api.url}/v1/images/${hash}/events`, { headers: { 'x-api-key': key } }, (answer) =>
          resolve({ status: answer.statusCode ?? 0, retryAfter: answer.headers['retry-after'] as string | undefined, close: () => call.destroy() }),
        );
        call.on('error', reject);
      });
    const streams = [await open(acmeHash, 'acme-key'), await open(acmeHash, 'acme-key'), await open(acmeHash, 'acme-key')];
    expect(streams.map((stream) => stream.status)).toEqual([200, 200, 429]);
    expect(streams[2].retryAfter).toBe('5');
    const other = await open(globexHash, 'globex-key');
    expect(other.status).toBe(200);
    streams[0].close();
    await until(async () => {
      const again = await open(acmeHash, 'acme-key');
      streams.push(again);
      return again.status === 200;
    }, 10_000, 'a slot freed by the closed stream');
    for (const stream of [...streams, other]) stream.close();
  });
});
