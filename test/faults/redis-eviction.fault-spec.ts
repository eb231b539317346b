import { fixture } from '../support/fixtures';
import { request } from '../support/http';
import { until } from '../support/load';
import { errorLines, TestStack } from '../support/test-stack';

/**
 * BullMQ needs Redis' maxmemory-policy `noeviction`: under any other policy a full Redis evicts queued jobs,
 * half their records, their bytes and results, and accepted work is lost without an error. Both apps read the
 * policy from INFO memory at start and in readiness and refuse another one unless REDIS_ALLOW_EVICTION accepts it;
 * whatever a damaged job record holds, GET /v1/jobs/:id and the worker answer it without a 500 or a crash.
 */
describe('fault: a Redis that may evict keys', () => {
  const stack = new TestStack();
  afterAll(() => stack.stop());

  it('neither app starts on allkeys-lru; the message names the policy and both ways out', async () => {
    const redis = await stack.startRedis({ args: ['--maxmemory-policy', 'allkeys-lru'] });
    for (const kind of ['api', 'worker'] as const) {
      const app = await stack.spawn(kind, {}, redis);
      expect(await app.exitCode()).toBe(1);
      const fatal = app.logs.find((line) => line.level === 'fatal');
      expect(fatal?.msg).toMatch(/maxmemory-policy is "allkeys-lru"/);
      expect(fatal?.msg).toMatch(/noeviction/);
      expect(fatal?.msg).toMatch(/REDIS_ALLOW_EVICTION=true/);
    }
    // Accepted explicitly: both start, say so, and readiness reports the policy.
    const api = await stack.start('api', { REDIS_ALLOW_EVICTION: 'true' }, redis);
    const worker = await stack.start('worker', { REDIS_ALLOW_EVICTION: 'true' }, redis);
    expect(api.logsWith('redis.eviction_accepted')).toHaveLength(1);
    expect(worker.logsWith('redis.eviction_accepted')).toHaveLength(1);
    const ready = await request(`${api.url}/health/ready`);
    expect(ready.status).toBe(200);
    expect(ready.body.info.redis.maxmemoryPolicy).toBe('allkeys-lru');
    await Promise.all([api.stop(), worker.stop()]);
  });

  it('readiness of both apps fails as soon as the policy changes under them, naming it', async () => {
    const redis = await stack.startRedis();
    const client = stack.client(redis);
    const api = await stack.start('api', {}, redis);
    const worker = await stack.start('worker', {}, redis);
    const workerPort = (await worker.waitForLog((line) => line.action === 'worker.http_listening')).port;
    const workerReady = () => request(`http://127.0.0.1:${workerPort}/health/ready`);
    expect((await request(`${api.url}/health/ready`)).status).toBe(200);
    expect((await workerReady()).status).toBe(200);

    await client.config('SET', 'maxmemory-policy', 'volatile-lru');
    const apiReady = await request(`${api.url}/health/ready`);
    expect(apiReady.status).toBe(503);
    expect(apiReady.body.error.redis.message).toMatch(/"volatile-lru"[\s\S]*noeviction/);
    // An operator must change the policy: the wait a full Redis' 503 asks for.
    expect(apiReady.headers.get('retry-after')).toBe('10');
    const workerAnswer = await workerReady();
    expect(workerAnswer.status).toBe(503);
    expect(workerAnswer.body.info.redis.message).toMatch(/"volatile-lru"/);

    await client.config('SET', 'maxmemory-policy', 'noeviction');
    expect((await request(`${api.url}/health/ready`)).status).toBe(200);
    await Promise.all([api.stop(), worker.stop()]);
  });

  it('a job record with fields missing (evicted, then partly written again) is answered, never a 500, and the worker fails it cleanly', async () => {
    const redis = await stack.startRedis();
    const client = stack.client(redis);
    // No worker yet: the jobs stay queued and the API answers 202 with their ids.
    const api = await stack.start('api', { REQUEST_WAIT_MS: '200' }, redis);
    const submit = async () => {
      const answer = await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('castle_image.jpg') });
      expect(answer.status).toBe(202);
      return answer.body.id as string;
    };
    const ids = [await submit(), await submit(), await submit(), await submit()];
    const jobKey = (id: string) => `{iiq}:inference:${id}`;
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
    const worker = await stack.start('worker', {}, redis);
    await until(() => worker.logsWith('job.record_incomplete').length >= 1, 30_000, 'the worker to meet an incomplete record');
    for (const id of ids) expect((await request(`${api.url}/v1/jobs/${id}`)).status).not.toBe(500);
    expect(errorLines(api)).toEqual([]);
    expect(worker.exited).toBe(false);
    await Promise.all([api.stop(), worker.stop()]);
  });
});
