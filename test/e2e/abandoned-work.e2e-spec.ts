import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { holdConnection, request } from '../support/http';
import { until } from '../support/load';
import { errorLines, TestStack } from '../support/test-stack';

/**
 * Clients that leave. A classify job whose client hung up before a worker took it is dropped (nobody can read
 * it: the client never got its id) and counted; face and analysis jobs run anyway (their results are read
 * later, by image hash). An upload cut off by its client is a client abort in the log, not a server error.
 */
describe('work for clients that left', () => {
  const stack = new TestStack();
  let client: Redis;
  let api: AppProcess;
  const env = { REQUEST_WAIT_MS: '20000', FACE_WAIT_MS: '20000' };
  const castle = fixture('castle_image.jpg');
  const face = fixture('face_obama_1.jpg');

  beforeAll(async () => {
    await stack.startRedis();
    client = stack.client();
    // No worker yet: whatever is queued waits.
    api = await stack.start('api', env);
  });

  afterAll(() => stack.stop());

  it('classify jobs of clients that hung up are dropped and counted; a face search whose client left still runs', async () => {
    const CLIENTS = 6;
    const hangUpAfter1s = (url: string, body: Buffer) =>
      fetch(url, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body, signal: AbortSignal.timeout(1000) }).then(
        (answer) => answer.status,
        () => 'hung up',
      );
    const left = await Promise.all([...Array.from({ length: CLIENTS }, () => hangUpAfter1s(`${api.url}/v1/classify`, castle)), hangUpAfter1s(`${api.url}/v1/faces`, face)]);
    expect(left).toEqual(left.map(() => 'hung up'));
    await until(() => api.logsWith('job.abandoned').length === CLIENTS, 10_000, 'every abandoned classify job to be handled');
    expect(api.logsWith('job.abandoned').every((line) => line.dropped === true)).toBe(true);
    const metrics = (await request(`${api.url}/metrics`)).body as string;
    expect(metrics).toMatch(new RegExp(`classify_jobs_abandoned_total\\{[^}]*outcome="dropped"[^}]*\\} ${CLIENTS}\\b`));
    // Left in Redis: the face job only; no image bytes of the dropped jobs.
    expect(await client.zcard('{iiq}:inference:prioritized')).toBe(1);
    expect(await client.keys('iiq:blob:*')).toEqual([]);

    const worker = await stack.start('worker', env);
    const faceHash = createHash('sha256').update(face).digest('hex');
    await until(async () => (await request(`${api.url}/v1/images/${faceHash}/matches`)).status === 200, 30_000, 'the face search to finish for nobody');
    const served = await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle });
    expect(served.status).toBe(200);
    // The worker ran the face job and the one classify job someone waited for: none of the dropped ones.
    const started = worker.logsWith('job.started').map((line) => line.jobName);
    expect(started.sort()).toEqual(['classify', 'match-faces']);
    expect(errorLines(api)).toEqual([]);
  });

  it('an upload its client cuts off is logged as a client abort at info, never as a server error', async () => {
    const boundary = 'cut-off-upload';
    const partHead = `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="castle.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`;
    const multipartHead = `POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${partHead.length + castle.length + 100}\r\n\r\n`;
    const rawHead = `POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: ${castle.length}\r\n\r\n`;
    const before = api.logsWith('http.client_abort').length;
    // Half the image, then the client closes the connection.
    const cut = await Promise.all([
      holdConnection(api.port!, Buffer.concat([Buffer.from(multipartHead + partHead), castle.subarray(0, castle.length >> 1)]), { maxMs: 500 }),
      holdConnection(api.port!, Buffer.concat([Buffer.from(rawHead), castle.subarray(0, castle.length >> 1)]), { maxMs: 500 }),
    ]);
    expect(cut.map((connection) => connection.status)).toEqual([0, 0]);
    await until(() => api.logsWith('http.client_abort').length >= before + 2, 10_000, 'both aborts to be logged');
    expect(api.logsWith('http.client_abort').every((line) => line.level === 'info')).toBe(true);
    expect(errorLines(api)).toEqual([]);
    expect((await request(`${api.url}/health/live`)).status).toBe(200);
  });
});
