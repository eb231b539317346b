import type Redis from 'ioredis';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';

/**
 * BullMQ needs Redis' maxmemory-policy `noeviction`: under any other policy a full Redis evicts queued jobs,
 * half their records, their bytes and results, and accepted work is lost without an error. Both apps read the
 * policy from INFO memory at start and in readiness and refuse another one unless REDIS_ALLOW_EVICTION accepts it;
 * whatever a damaged job record holds, GET /v1/jobs/:id and the worker answer it without a 500 or a crash.
 */
describe('fault: a Redis that may evict keys', () => {
  let storageDir: string;
  const servers: TestRedis[] = [];
  const apps: AppProcess[] = [];
  const clients: Redis[] = [];
  const redisWith = async (args: string[]) => {
    const redis = await TestRedis.start(undefined, { args });
    servers.push(redis);
    return redis;
  };
  const start = async (kind: 'api' | 'worker', redis: TestRedis, env: Record<string, string> = {}) => {
    const app = await AppProcess.start(kind, { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', ...env });
    apps.push(app);
    return app;
  };

  beforeAll(() => {
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-eviction-'));
  });

  afterAll(async () => {
    clients.forEach((client) => client.disconnect());
    await Promise.all(apps.map((app) => app.stop()));
    await Promise.all(servers.map((server) => server.stop()));
    rmSync(storageDir, { recursive: true, force: true });
  });

  it('neither app starts on allkeys-lru; the message names the policy and both ways out', async () => {
    const redis = await redisWith(['--maxmemory-policy', 'allkeys-lru']);
    for (const kind of ['api', 'worker'] as const) {
      const app = await AppProcess.spawn(kind, { REDIS_URL: redis.url, STORAGE_DIR: storageDir });
      expect(await app.exitCode()).toBe(1);
      const fatal = app.logs.find((line) => line.level === 'fatal');
      expect(fatal?.msg).toMatch(/maxmemory-policy is "allkeys-lru"/);
      expect(fatal?.msg).toMatch(/noeviction/);
      expect(fatal?.msg).toMatch(/REDIS_ALLOW_EVICTION=true/);
    }
    // Accepted explicitly: both start, say so, and readiness reports the policy.
    const api = await start('api', redis, { REDIS_ALLOW_EVICTION: 'true' });
    const worker = await start('worker', redis, { REDIS_ALLOW_EVICTION: 'true' });
    expect(api.logsWith('redis.eviction_accepted')).toHaveLength(1);
    expect(worker.logsWith('redis.eviction_accepted')).toHaveLength(1);
    const ready = await request(`${api.url}/health/ready`);
    expect(ready.status).toBe(200);
    expect(ready.body.info.redis.maxmemoryPolicy).toBe('allkeys-lru');
    await Promise.all([api.stop(), worker.stop()]);
  });

  it('readiness of both apps fails as soon as the policy changes under them, naming it', async () => {
    const redis = await redisWith([]);
    const client = redis.client();
    clients.push(client);
    const api = await start('api', redis);
    const worker = await start('worker', redis);
    const workerPort = (await worker.waitForLog((line) => line.action === 'worker.http_listening')).port;
    const workerReady = () => request(`http://127.0.0.1:${workerPort}/health/ready`);
    expect((await request(`${api.url}/health/ready`)).status).toBe(200);
    expect((await workerReady()).status).toBe(200);

    await client.config('SET', 'maxmemory-policy', 'volatile-lru');
    const apiReady = await request(`${api.url}/health/ready`);
    expect(apiReady.status).toBe(503);
    expect(apiReady.body.error.redis.message).toMatch(/"volatile-lru"[\s\S]*noeviction/);
    const workerAnswer = await workerReady();
    expect(workerAnswer.status).toBe(503);
    expect(workerAnswer.body.info.redis.message).toMatch(/"volatile-lru"/);

    await client.config('SET', 'maxmemory-policy', 'noeviction');
    expect((await request(`${api.url}/health/ready`)).status).toBe(200);
    await Promise.all([api.stop(), worker.stop()]);
  });

  it('a job record with fields missing (evicted, then partly written again) is answered, never a 500, and the worker fails it cleanly', async () => {
    const redis = await redisWith([]);
    const client = redis.client();
    clients.push(client);
    // No worker yet: the jobs stay queued and the API answers 202 with their ids.
    const api = await start('api', redis, { REQUEST_WAIT_MS: '200' });
    const submit = async () => {
      const answer = await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('castle_image.jpg') });
      expect(answer.status).toBe(202);
      return answer.body.id as string;
    };
    const ids = [await submit(), await submit(), await submit(), await submit()];
    const jobKey = (id: string) => `iiq:inference:${id}`;
    // What eviction plus BullMQ's next write leaves behind: a hash with a few fields, or none at all.
    await client.del(jobKey(ids[0]));
    await client.hset(jobKey(ids[0]), 'processedOn', String(Date.now()), 'ats', '1');
    await client.hdel(jobKey(ids[1]), 'name', 'timestamp', 'opts');
    await client.hset(jobKey(ids[2]), 'data', '{"tenant":"default","image":');
    await client.del(jobKey(ids[3]));

    for (const id of ids) {
      const answer = await request(`${api.url}/v1/jobs/${id}`);
      expect(`${id}: ${answer.status}`).toMatch(/: (200|404)$/);
    }
    const worker = await start('worker', redis);
    await until(() => worker.logsWith('job.record_incomplete').length >= 1, 30_000, 'the worker to meet an incomplete record');
    for (const id of ids) expect((await request(`${api.url}/v1/jobs/${id}`)).status).not.toBe(500);
    expect(api.logs.filter((line) => line.level === 'error' || line.level === 'fatal')).toEqual([]);
    expect(worker.exited).toBe(false);
    await Promise.all([api.stop(), worker.stop()]);
  });
});
