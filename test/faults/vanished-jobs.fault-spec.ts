import type Redis from 'ioredis';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { request } from '../support/http';
import { TestRedis } from '../support/test-redis';

/**
 * The job a POST /v1/classify queued disappears while the request waits for it (Redis restarted without
 * persistence, a failover that lost writes; FLUSHALL does the same here). The request still holds the image, so
 * it queues the job once more; lost again, the answer is 503 with Retry-After. Never 404 for a job the client
 * never named.
 */
describe('fault: the queued job vanishes while its request waits', () => {
  let redis: TestRedis;
  let client: Redis;
  let storageDir: string;
  let api: AppProcess;
  const apps: AppProcess[] = [];
  const env = () => ({ REDIS_URL: redis.url, STORAGE_DIR: storageDir, REQUEST_WAIT_MS: '30000', JOB_POLL_INTERVAL_MS: '200', ORT_INTRA_OP_THREADS: '1' });
  const classify = () => request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('castle_image.jpg') });
  /** The next log line of `action` after the ones already seen. */
  const next = (action: string) => {
    const seen = api.logsWith(action).length;
    return api.waitForLog((line) => line.action === action && api.logsWith(action).indexOf(line) >= seen);
  };

  beforeAll(async () => {
    redis = await TestRedis.start();
    client = redis.client();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-vanished-'));
    // No worker yet: the jobs wait in the queue until the test flushes them.
    api = await AppProcess.start('api', env());
    apps.push(api);
  });

  afterAll(async () => {
    client?.disconnect();
    await Promise.all(apps.map((app) => app.stop()));
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  it('lost twice: 503 SERVICE_UNAVAILABLE with Retry-After', async () => {
    const queued = next('job.enqueued');
    const answer = classify();
    await queued;
    const requeued = next('job.requeued');
    await client.flushall();
    await requeued;
    await client.flushall();
    const lost = await answer;
    expect(`${lost.status} ${lost.body.error?.code}`).toBe('503 SERVICE_UNAVAILABLE');
    expect(Number(lost.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('lost once: queued again, and the client gets its answer', async () => {
    const queued = next('job.enqueued');
    const answer = classify();
    await queued;
    const requeued = next('job.requeued');
    await client.flushall();
    await requeued;
    apps.push(await AppProcess.start('worker', env()));
    const served = await answer;
    expect(served.status).toBe(200);
    expect(served.body.predictions[0].label).toBe('castle');
    expect(api.logsWith('job.vanished').length).toBe(3);
  });
});
