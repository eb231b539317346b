import { createHash } from 'node:crypto';
import { RedisKeys, TenantId } from '@app/contracts';
import { AppProcess } from '../support/app-process';
import { expectedTop5, fixture } from '../support/fixtures';
import { request, HttpResult } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';

const KEYS = { alice: 'alice-key', bob: 'bob-key' };

/**
 * Classify coalescing (CLASSIFY_COALESCE_*): requests that find this API's in-flight limit reached for their model
 * go together as one classify-batch job. Real Redis, real models; the worker is started only once the requests are
 * queued, so which requests form a group does not depend on timing.
 */
describe('coalesced classify requests (real Redis, real models)', () => {
  let redis: TestRedis;
  /** Waits the default REQUEST_WAIT_MS. */
  let api: AppProcess;
  /** Answers 202 after 300 ms. */
  let shortApi: AppProcess;
  /** Answers 202 after 300 ms; its jobs' deadline passes after 1 s. */
  let deadlineApi: AppProcess;
  let worker: AppProcess | undefined;
  let env: Record<string, string>;
  const castle = fixture('castle_image.jpg');
  const kitten = fixture('cat_kitten_224.png');
  const beagle = fixture('dog_beagle_jemma.png');

  beforeAll(async () => {
    redis = await TestRedis.start();
    env = {
      REDIS_URL: redis.url,
      ORT_INTRA_OP_THREADS: '1',
      API_KEYS: `alice:${KEYS.alice},bob:${KEYS.bob}`,
      RATE_LIMIT_MAX: '0',
      CLASSIFY_COALESCE_MAX: '8',
      CLASSIFY_COALESCE_IN_FLIGHT: '1',
      CLASSIFY_COALESCE_DELAY_MS: '500',
    };
    [api, shortApi, deadlineApi] = await Promise.all([
      AppProcess.start('api', env),
      AppProcess.start('api', { ...env, REQUEST_WAIT_MS: '300' }),
      AppProcess.start('api', { ...env, REQUEST_WAIT_MS: '300', JOB_DEADLINE_MS: '1000' }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([api?.stop(), shortApi?.stop(), deadlineApi?.stop(), worker?.stop()]);
    await redis?.stop();
  });

  const classify = (app: AppProcess, key: string, bytes: Buffer, type = 'image/jpeg') =>
    request(`${app.url}/v1/classify?model=mobilenet_v2&topk=3`, { method: 'POST', headers: { 'content-type': type, 'x-api-key': key }, body: bytes });
  const readJob = (key: string, id: string) => request(`${api.url}/v1/jobs/${id}`, { headers: { 'x-api-key': key } });

  /** Items of a coalesced job that timed out (202), read back before and after a worker answers them. */
  let timedOut: { alice: HttpResult; bob: HttpResult };

  it('a request that times out in a coalesced job answers 202 with its item id, readable only by its own tenant', async () => {
    // No worker: the first request is the one job in flight; the next two wait as one group (sent after 500 ms).
    const first = classify(shortApi, KEYS.alice, castle);
    await shortApi.waitForLog((line) => line.action === 'job.enqueued');
    const [alice, bob] = await Promise.all([classify(shortApi, KEYS.alice, castle), classify(shortApi, KEYS.bob, castle)]);
    expect((await first).status).toBe(202);
    expect((await first).body.id).toMatch(/^[0-9a-f-]{36}$/);
    for (const answer of [alice, bob]) {
      expect(answer.status).toBe(202);
      expect(answer.body.id).toMatch(/^[0-9a-f-]{36}\.[01]$/);
      expect(answer.headers.get('location')).toBe(`/v1/jobs/${answer.body.id}`);
    }
    expect(alice.body.id.split('.')[0]).toBe(bob.body.id.split('.')[0]);
    timedOut = { alice, bob };
    const enqueued = shortApi.logsWith('job.enqueued');
    expect(enqueued.filter((line) => line.groupSize === 2).map((line) => line.jobId).sort()).toEqual([alice.body.id, bob.body.id].sort());

    expect((await readJob(KEYS.alice, alice.body.id)).body).toMatchObject({ id: alice.body.id, name: 'classify', state: 'waiting' });
    expect((await readJob(KEYS.bob, bob.body.id)).body).toMatchObject({ id: bob.body.id, state: 'waiting' });
    // Another tenant's item is answered exactly as a missing one; so is an index past the job's items.
    const missing = await readJob(KEYS.bob, `${alice.body.id.split('.')[0]}.7`);
    expect(missing.status).toBe(404);
    for (const [key, id] of [
      [KEYS.bob, alice.body.id],
      [KEYS.alice, bob.body.id],
    ]) {
      const other = await readJob(key, id);
      expect(other.status).toBe(404);
      expect(other.body.error.code).toBe(missing.body.error.code);
      expect(other.body.error.message).toBe(missing.body.error.message.replace(`${alice.body.id.split('.')[0]}.7`, id));
    }
    // The batch job's own UUID answers nobody: it has no single tenant.
    expect((await readJob(KEYS.alice, alice.body.id.split('.')[0])).status).toBe(404);
  });

  it('a suspect image (a coalesced job that carried it lost its worker twice) goes alone; the others still group', async () => {
    // What a worker writes when a classify-batch job fails at the stalled limit (PoisonWatch.stalledTooOften).
    const client = redis.client();
    const crashes = new RedisKeys('iiq').tenant('alice' as TenantId).imageCrashes(createHash('sha256').update(kitten).digest('hex'));
    await client.hset(crashes, 'mobilenet_v2:coalesced', '1');
    const before = shortApi.logsWith('job.enqueued').length;
    const first = classify(shortApi, KEYS.bob, beagle, 'image/png');
    await shortApi.waitForLog((line) => line.action === 'job.enqueued' && shortApi.logsWith('job.enqueued').indexOf(line) >= before);
    const [suspect, ...others] = await Promise.all([classify(shortApi, KEYS.alice, kitten, 'image/png'), classify(shortApi, KEYS.bob, castle), classify(shortApi, KEYS.bob, beagle, 'image/png')]);
    expect((await first).status).toBe(202);
    expect(suspect.status).toBe(202);
    expect(suspect.body.id).toMatch(/^[0-9a-f-]{36}$/);
    for (const answer of others) expect(answer.body.id).toMatch(/^[0-9a-f-]{36}\.[01]$/);
    // The kitten is grouped again in the tests below.
    await client.del(crashes);
    client.disconnect();
  });

  /** Items whose deadline passes before a worker reaches them. */
  let expired: string[] = [];

  it('items whose deadline passed before a worker reached them are queued (202) and will be skipped', async () => {
    const first = classify(deadlineApi, KEYS.alice, castle);
    await deadlineApi.waitForLog((line) => line.action === 'job.enqueued');
    const grouped = await Promise.all([classify(deadlineApi, KEYS.alice, kitten, 'image/png'), classify(deadlineApi, KEYS.bob, beagle, 'image/png')]);
    expect((await first).status).toBe(202);
    expect(grouped.map((answer) => answer.status)).toEqual([202, 202]);
    expired = grouped.map((answer) => answer.body.id);
    for (const id of expired) expect(id).toMatch(/^[0-9a-f-]{36}\.[01]$/);
    // JOB_DEADLINE_MS (1 s) passes before the next test starts the worker.
    await new Promise((resolve) => setTimeout(resolve, 1100));
  });

  it('concurrent requests of two tenants form one group; each gets its own labels; a corrupt image fails alone', async () => {
    const before = api.logsWith('job.enqueued').length;
    const first = classify(api, KEYS.alice, castle);
    await until(() => api.logsWith('job.enqueued').length > before, 10_000, 'the first job');
    const sends: [string, string, Promise<HttpResult>][] = [
      ['alice', 'castle', classify(api, KEYS.alice, castle)],
      ['bob', 'kitten', classify(api, KEYS.bob, kitten, 'image/png')],
      ['alice', 'beagle', classify(api, KEYS.alice, beagle, 'image/png')],
      ['bob', 'castle', classify(api, KEYS.bob, castle)],
      ['alice', 'corrupt', classify(api, KEYS.alice, castle.subarray(0, 20_000))],
      ['bob', 'beagle', classify(api, KEYS.bob, beagle, 'image/png')],
    ];
    await until(() => api.logsWith('job.enqueued').length >= before + 7, 10_000, 'every request queued');
    worker = await AppProcess.start('worker', env);
    expect((await first).status).toBe(200);
    const files: Record<string, string> = { castle: 'castle_image.jpg', kitten: 'cat_kitten_224.png', beagle: 'dog_beagle_jemma.png' };
    const ids: string[] = [];
    for (const [tenant, image, pending] of sends) {
      const answer = await pending;
      if (image === 'corrupt') {
        expect(answer.status).toBe(422);
        expect(answer.body.error.code).toBe('IMAGE_DECODE_FAILED');
        continue;
      }
      expect([tenant, image, answer.status]).toEqual([tenant, image, 200]);
      expect(answer.body.predictions).toHaveLength(3);
      expect(answer.body.predictions[0].label).toBe(expectedTop5('mobilenet_v2', files[image])[0].label);
      ids.push(answer.body.id);
    }
    // One group of six: one job, six item ids, one enqueue line per request naming the batch job.
    const grouped = api.logsWith('job.enqueued').slice(before).filter((line) => line.groupSize === 6);
    expect(grouped).toHaveLength(6);
    expect(new Set(grouped.map((line) => line.batchJobId)).size).toBe(1);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f-]{36}\.[0-5]$/);
    const metrics = (await request(`${api.url}/metrics`)).body as string;
    const series = (name: string) => Number(new RegExp(`^classify_coalesced_group_size_${name}\\{[^}]*model="mobilenet_v2"[^}]*\\} (\\d+)`, 'm').exec(metrics)?.[1]);
    expect(series('count')).toBe(2);
    expect(series('sum')).toBe(7);
    // The worker ran the six items as one job and logged each with its request id.
    // (2 items of the first test, 2 past their deadline, these 6)
    await until(() => worker!.logsWith('job.item_completed').length + worker!.logsWith('job.item_failed').length >= 10, 10_000, 'item lines');
    const itemFailures = worker!.logsWith('job.item_failed').map((line) => String(line.error));
    expect(itemFailures.filter((error) => error.includes('IMAGE_DECODE_FAILED'))).toHaveLength(1);
    expect(itemFailures.filter((error) => error.includes('DEADLINE_EXCEEDED'))).toHaveLength(2);
    expect(itemFailures).toHaveLength(3);
  });

  it('the timed-out items are answered once a worker ran them: each to its own tenant', async () => {
    const { alice, bob } = timedOut;
    let read: HttpResult | undefined;
    await until(async () => (read = await readJob(KEYS.alice, alice.body.id)).body.state === 'completed', 30_000, "alice's item");
    expect(read!.body.result.predictions[0].label).toMatch(/castle/);
    const bobs = await readJob(KEYS.bob, bob.body.id);
    expect(bobs.body).toMatchObject({ id: bob.body.id, name: 'classify', state: 'completed' });
    expect(bobs.body.result.predictions[0].label).toBe('castle');
    expect((await readJob(KEYS.bob, alice.body.id)).status).toBe(404);
  });

  it('items past their deadline were skipped by the worker: each failed alone with DEADLINE_EXCEEDED', async () => {
    for (const [key, id] of [
      [KEYS.alice, expired[0]],
      [KEYS.bob, expired[1]],
    ]) {
      const read = await request(`${deadlineApi.url}/v1/jobs/${id}`, { headers: { 'x-api-key': key } });
      expect(read.body).toMatchObject({ id, name: 'classify', state: 'failed', error: { code: 'DEADLINE_EXCEEDED' } });
    }
  });

  it('RATE_LIMIT_MAX=0 turns the rate limiter off: none of these requests cost a rate-limit script or left a counter', async () => {
    const client = redis.client();
    try {
      expect(await client.keys('*ratelimit*')).toEqual([]);
    } finally {
      client.disconnect();
    }
  });
});
