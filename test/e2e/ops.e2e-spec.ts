import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { AppProcess, REPO_ROOT } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { postImage, request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';
import { setTimeout as sleep } from 'node:timers/promises';

const castle = fixture('castle_image.jpg');

describe('operations: health, metrics, back-pressure', () => {
  let redis: TestRedis;
  const apps: AppProcess[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await redis?.stop();
  });

  it('readiness follows the worker; metrics show traffic in both processes', async () => {
    const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'ops', ORT_INTRA_OP_THREADS: '1', WORKER_HEARTBEAT_MS: '500' };
    const api = await AppProcess.start('api', env);
    apps.push(api);
    expect((await request(`${api.url}/health/live`)).status).toBe(200);
    const notReady = await request(`${api.url}/health/ready`);
    expect(notReady.status).toBe(503);
    expect(notReady.body.error.workers.status).toBe('down');
    // As every 503: when to ask again (no worker: the 2 s of QUEUE_FULL and an unreachable Redis).
    expect(notReady.headers.get('retry-after')).toBe('2');

    const worker = await AppProcess.start('worker', env);
    apps.push(worker);
    const port = (await worker.waitForLog((line) => line.action === 'worker.http_listening')).port;
    await until(async () => (await request(`${api.url}/health/ready`)).status === 200, 15_000, 'readiness', 200);
    const workerReady = await request(`http://127.0.0.1:${port}/health/ready`);
    expect(workerReady.status).toBe(200);
    expect(workerReady.body.info.models.status).toBe('up');

    for (let i = 0; i < 3; i++) expect((await postImage(`${api.url}/v1/classify`, castle)).status).toBe(200);
    const apiMetrics = (await request(`${api.url}/metrics`)).body as string;
    expect(apiMetrics).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/v1\/classify"[^}]*status_code="200"[^}]*\} 3/);
    expect(apiMetrics).toMatch(/inference_end_to_end_seconds_count\{[^}]*model="mobilenet_v2"[^}]*\} 3/);
    expect(apiMetrics).toMatch(/queue_jobs\{[^}]*state="completed"[^}]*\} 3/);
    expect(apiMetrics).toContain('nodejs_eventloop_lag_p99_seconds');
    expect(apiMetrics).toContain('result_cache_hits_total');
    const workerMetrics = (await request(`http://127.0.0.1:${port}/metrics`)).body as string;
    expect(workerMetrics).toMatch(/inference_batch_size_count\{[^}]*model="mobilenet_v2"[^}]*\} [1-9]/);
    expect(workerMetrics).toMatch(/worker_jobs_total\{[^}]*name="classify",outcome="completed"[^}]*\} 3/);

    await worker.stop();
    await until(async () => (await request(`${api.url}/health/ready`)).status === 503, 15_000, 'readiness to fail', 200);
  });

  it('a full queue refuses new work at once with 503 QUEUE_FULL and Retry-After', async () => {
    // No worker: jobs stay queued. Each request gives up after 200 ms (202) and leaves its job waiting.
    const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'full', MAX_QUEUE_DEPTH: '2', REQUEST_WAIT_MS: '200' };
    const api = await AppProcess.start('api', env);
    apps.push(api);
    expect((await postImage(`${api.url}/v1/classify`, castle)).status).toBe(202);
    expect((await postImage(`${api.url}/v1/classify`, castle)).status).toBe(202);
    await sleep(150); // past the 100 ms depth cache
    const started = Date.now();
    const refused = await postImage(`${api.url}/v1/classify`, castle);
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('QUEUE_FULL');
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(Date.now() - started).toBeLessThan(1000);
    const ready = await request(`${api.url}/health/ready`);
    expect(ready.status).toBe(503);
    expect(ready.body.error.queue.status).toBe('down');
  });

  it('API keys: 401 without a valid key (health, metrics, docs stay open); 429 with Retry-After past the rate limit', async () => {
    const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'auth', API_KEYS: 'alpha-key, beta-key', RATE_LIMIT_MAX: '4', RATE_LIMIT_WINDOW_MS: '60000' };
    // Two API processes: the rate limit is counted in Redis, so they share one budget per key.
    const [api, other] = await Promise.all([AppProcess.start('api', env), AppProcess.start('api', env)]);
    apps.push(api, other);
    const models = (headers: Record<string, string> = {}) => request(`${api.url}/v1/models`, { headers });
    const missing = await models();
    expect(missing.status).toBe(401);
    expect(missing.body.error.code).toBe('UNAUTHORIZED');
    expect((await models({ authorization: 'Bearer wrong-key' })).status).toBe(401);
    expect((await models({ 'x-api-key': 'alpha-ke' })).status).toBe(401);
    expect((await models({ authorization: 'Bearer alpha-key' })).status).toBe(200);
    expect((await models({ 'x-api-key': 'beta-key' })).status).toBe(200);
    expect((await postImage(`${api.url}/v1/classify`, castle)).status).toBe(401);
    for (const path of ['/health/live', '/metrics', '/docs']) expect((await request(`${api.url}${path}`)).status).toBe(200);

    // alpha-key has used 1 of 4: three more pass (two of them through the other API), the next is limited on
    // either API; beta-key has its own budget.
    expect((await models({ authorization: 'Bearer alpha-key' })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await request(`${other.url}/v1/models`, { headers: { authorization: 'Bearer alpha-key' } })).status).toBe(200);
    expect((await request(`${other.url}/v1/models`, { headers: { authorization: 'Bearer alpha-key' } })).status).toBe(429);
    const limited = await models({ authorization: 'Bearer alpha-key' });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('RATE_LIMITED');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await models({ 'x-api-key': 'beta-key' })).status).toBe(200);
    // Probes and scrapes are never limited (budgets are per route: more calls than the limit on each).
    for (const path of ['/health/live', '/metrics']) {
      for (let i = 0; i < 6; i++) expect((await request(`${api.url}${path}`, { headers: { authorization: 'Bearer alpha-key' } })).status).toBe(200);
    }
  });

  it('npm run load-test drives a running API to the requested count and reports every answer', async () => {
    const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'load', ORT_INTRA_OP_THREADS: '1' };
    const [api, worker] = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]);
    apps.push(api, worker);
    const run = spawnSync(process.execPath, [join(REPO_ROOT, 'dist/bench/load-test.js'), '--url', api.url, '--requests', '40', '--concurrency', '4', '--max-error-rate', '0'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(run.status).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').pop()!);
    expect(summary).toMatchObject({ requests: 40, statusCounts: { 200: 40 }, errors: 0, timeouts: 0 });
  });

  it('bull-board at /admin/queues only with the admin credentials', async () => {
    const api = await AppProcess.start('api', { REDIS_URL: redis.url, QUEUE_PREFIX: 'board', ADMIN_PASSWORD: 's3cret-board' });
    apps.push(api);
    expect((await request(`${api.url}/admin/queues`)).status).toBe(401);
    const wrong = Buffer.from('admin:nope').toString('base64');
    expect((await request(`${api.url}/admin/queues`, { headers: { authorization: `Basic ${wrong}` } })).status).toBe(401);
    const right = Buffer.from('admin:s3cret-board').toString('base64');
    const page = await request(`${api.url}/admin/queues`, { headers: { authorization: `Basic ${right}` } });
    expect(page.status).toBe(200);
    expect(String(page.body)).toContain('<');
    const queues = await request(`${api.url}/admin/queues/api/queues`, { headers: { authorization: `Basic ${right}` } });
    expect(queues.status).toBe(200);
    expect(JSON.stringify(queues.body)).toContain('inference');
  });

  it('Redis down: readiness fails and requests get 503 at once; after a restart API and worker serve again by themselves', async () => {
    let own = await TestRedis.start();
    const env = { REDIS_URL: own.url, QUEUE_PREFIX: 'down', ORT_INTRA_OP_THREADS: '1' };
    const worker = await AppProcess.start('worker', env);
    const api = await AppProcess.start('api', env);
    apps.push(worker, api);
    expect((await postImage(`${api.url}/v1/classify`, castle)).status).toBe(200);

    await own.stop();
    const started = Date.now();
    const refused = await postImage(`${api.url}/v1/classify`, castle);
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(Date.now() - started).toBeLessThan(2000);
    const ready = await request(`${api.url}/health/ready`);
    expect(ready.status).toBe(503);
    expect(ready.body.error.redis).toMatchObject({ status: 'down', message: expect.stringMatching(/^the queue store \(Redis\) is unreachable/) });
    expect(ready.headers.get('retry-after')).toBe('2');
    expect((await request(`${api.url}/health/live`)).status).toBe(200);

    own = await TestRedis.start(own.port);
    try {
      const back = Date.now();
      await until(async () => (await postImage(`${api.url}/v1/classify`, castle)).status === 200, 10_000, 'classify to succeed again', 200);
      // reported, not asserted as a timing: the 5 s target is checked by eye in the logs / note
      console.log(`served again ${Date.now() - back} ms after Redis came back`);
      expect(api.exited || worker.exited).toBe(false);
    } finally {
      await Promise.all([api.stop(), worker.stop()]);
      await own.stop();
    }
  });
});
