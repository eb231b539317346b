import type Redis from 'ioredis';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { request } from '../support/http';
import { TestStack } from '../support/test-stack';

/**
 * The job a POST /v1/classify queued disappears while the request waits for it (Redis restarted without
 * persistence, a failover that lost writes; FLUSHALL does the same here). The request still holds the image, so
 * it queues the job once more; lost again, the answer is 503 with Retry-After. Never 404 for a job the client
 * never named.
 */
describe('fault: the queued job vanishes while its request waits', () => {
  const stack = new TestStack();
  let client: Redis;
  let api: AppProcess;
  const env = { REQUEST_WAIT_MS: '30000', JOB_POLL_INTERVAL_MS: '200' };
  /** The next log line of `action` after the ones already seen. */
  const next = (action: string) => {
    const seen = api.logsWith(action).length;
    return api.waitForLog((line) => line.action === action && api.logsWith(action).indexOf(line) >= seen);
  };
  /** Sends a classification and flushes Redis once its job is queued, and again once it is queued again. */
  const classifyLosingItsJob = async (times: 1 | 2) => {
    const queued = next('job.enqueued');
    const answer = request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('castle_image.jpg') });
    await queued;
    const requeued = next('job.requeued');
    await client.flushall();
    await requeued;
    if (times === 2) await client.flushall();
    return answer;
  };

  beforeAll(async () => {
    await stack.startRedis();
    client = stack.client();
    // No worker yet: the jobs wait in the queue until the test flushes them.
    api = await stack.start('api', env);
  });

  afterAll(() => stack.stop());

  it('lost twice: 503 SERVICE_UNAVAILABLE with Retry-After', async () => {
    const lost = await classifyLosingItsJob(2);
    expect(`${lost.status} ${lost.body.error?.code}`).toBe('503 SERVICE_UNAVAILABLE');
    expect(Number(lost.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('lost once: queued again, and the client gets its answer', async () => {
    const answer = classifyLosingItsJob(1);
    await next('job.requeued');
    await stack.start('worker', env);
    const served = await answer;
    expect(served.status).toBe(200);
    expect(served.body.predictions[0].label).toBe('castle');
    expect(api.logsWith('job.vanished').length).toBe(3);
  });
});
