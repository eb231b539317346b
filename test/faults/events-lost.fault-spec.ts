import type Redis from 'ioredis';
import { AppProcess } from '../support/app-process';
import { classifyLoad } from '../support/load';
import { TestRedis } from '../support/test-redis';

/**
 * BullMQ's QueueEvents are best-effort: a dropped connection or a trimmed stream loses them. The API must
 * then complete every request by polling job state. Here the events stream is emptied every 50 ms and the
 * API's blocking XREAD connection is killed every 500 ms, all through the load.
 */
describe('fault: queue events lost', () => {
  let redis: TestRedis;
  let api: AppProcess;
  let worker: AppProcess;
  let chaos: Redis;

  beforeAll(async () => {
    redis = await TestRedis.start();
    [api, worker] = await Promise.all([
      AppProcess.start('api', { REDIS_URL: redis.url, REQUEST_WAIT_MS: '30000', JOB_POLL_INTERVAL_MS: '250' }),
      AppProcess.start('worker', { REDIS_URL: redis.url }),
    ]);
    chaos = redis.client();
  });

  afterAll(async () => {
    chaos?.disconnect();
    await Promise.all([api?.stop(), worker?.stop()]);
    await redis?.stop();
  });

  it('events stream trimmed and QueueEvents disconnected mid-load: all 120 requests still complete, right', async () => {
    let trimmed = 0;
    let killed = 0;
    const trimTimer = setInterval(() => void chaos.xtrim('{iiq}:inference:events', 'MAXLEN', 0).then((n) => (trimmed += n), () => undefined), 50);
    // The first cut comes before any request, so it happens however fast the load finishes.
    killed += await killEventReaders(chaos);
    const killTimer = setInterval(() => void killEventReaders(chaos).then((n) => (killed += n), () => undefined), 500);
    try {
      const outcomes = await classifyLoad(api.url, { total: 120, concurrency: 24, timeoutMs: 60_000 });
      expect(outcomes.filter((outcome) => outcome.status !== 200 || outcome.label !== outcome.expected)).toEqual([]);
    } finally {
      clearInterval(trimTimer);
      clearInterval(killTimer);
    }
    // The faults really happened: events were thrown away and the event reader was cut off.
    expect(trimmed).toBeGreaterThan(0);
    expect(killed).toBeGreaterThan(0);
    // Events removed before QueueEvents read them were noticed (XINFO's max-deleted-entry-id past the last one
    // delivered), and every waiting job was polled at once rather than on its back-off (up to 16 intervals).
    expect(api.logsWith('queue_events.gap').length).toBeGreaterThan(0);
    console.log(`events lost: 120/120 requests answered right with ${trimmed} events trimmed away and the QueueEvents connection killed ${killed} times`);
  });
});

/** Kills the connections blocked in XREAD: that is QueueEvents reading the events stream. */
async function killEventReaders(client: Redis): Promise<number> {
  const list = (await client.client('LIST')) as string;
  const ids = list
    .split('\n')
    .filter((line) => / cmd=xread\b/.test(line))
    .map((line) => /\bid=(\d+)/.exec(line)?.[1])
    .filter((id): id is string => !!id);
  for (const id of ids) await client.client('KILL', 'ID', id);
  return ids.length;
}
