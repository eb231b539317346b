import type Redis from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppProcess, LogLine } from '../support/app-process';
import { request } from '../support/http';
import { classifyLoad, classifyOnce, classifySamples, until } from '../support/load';
import { TestRedis } from '../support/test-redis';
import { TestStack } from '../support/test-stack';

/**
 * One Redis outage of ~8 s, while the worker holds jobs, is a few warning lines in each process' log, not one
 * error line per job or per retry. Before (one run, 10 s outages, the worker busy at concurrency 32): a frozen
 * Redis (SIGSTOP) cost the worker 71 `worker.error` lines ("Missing lock for job … moveToFinished" and
 * "… moveToDelayed" 32 each, "could not renew lock for job …" 7), and one killed and restarted empty 64 ("Missing
 * key for job …"); the API's and the worker's BullMQ Queue, without an error listener, printed each refused
 * connection (9 in 10 s) as an 8-line console.error dump on stderr, and the API's QueueEvents wrote a warning per
 * retry (9). Jobs submitted once Redis is back complete.
 */
describe('fault: one Redis outage is a few log lines', () => {
  const OUTAGE_MS = 8000;
  const stack = new TestStack();
  const samples = classifySamples();
  let redis: TestRedis;
  let restarted: TestRedis | undefined;
  let client: Redis;

  beforeAll(async () => {
    redis = await stack.startRedis();
    client = stack.client(redis);
  });

  afterAll(async () => {
    await stack.stop();
    await restarted?.stop();
  });

  /** Jobs queued (202 after 100 ms) until the worker holds some: the outage then takes their locks away. */
  async function backlog(api: AppProcess): Promise<void> {
    const queued = await classifyLoad(api.url, { total: 200, concurrency: 50, timeoutMs: 20_000, samples });
    expect(queued.filter((o) => o.status !== 202 && o.status !== 200)).toEqual([]);
    await until(async () => (await client.llen('{iiq}:inference:active')) > 0, 10_000, 'the worker to hold jobs');
  }

  /** A classification submitted now completes (202 at once, then its job record says completed). */
  async function newJobCompletes(api: AppProcess): Promise<void> {
    let accepted: Awaited<ReturnType<typeof classifyOnce>> | undefined;
    await until(
      async () => {
        accepted = await classifyOnce(api.url, samples[0], 0, 10_000);
        return accepted.status === 202 || accepted.status === 200;
      },
      30_000,
      'a classification accepted after Redis is back',
      500,
    );
    if (accepted!.status === 200) return expect(accepted!.label).toBe(samples[0].label);
    await until(async () => (await request(`${api.url}/v1/jobs/${accepted!.jobId}`)).body?.state === 'completed', 60_000, `job ${accepted!.jobId} to complete`, 250);
  }

  /**
   * The lines a process wrote from `from` on that are not info: warnings, errors, and any non-JSON output. A job's
   * own outcome (`job.failed`, `job.item_failed`: one line per job, e.g. its image gone with Redis' data) is the
   * job log, not the process' trouble, and is counted apart.
   */
  const JOB_OUTCOMES = new Set(['job.failed', 'job.item_failed']);
  const troubleSince = (app: AppProcess, from: number): LogLine[] => app.logs.slice(from).filter((line) => line.level !== 'info' && line.level !== 'debug' && !JOB_OUTCOMES.has(line.action ?? ''));
  const summary = (lines: LogLine[]) => lines.map((line) => `${line.level ?? 'stderr'} ${line.action ?? ''} ${(line.err as { message?: string } | undefined)?.message ?? line.msg ?? ''}`.slice(0, 160));

  const expectFewLines = (api: AppProcess, worker: AppProcess, from: { api: number; worker: number }) => {
    const apiLines = troubleSince(api, from.api);
    const workerLines = troubleSince(worker, from.worker);
    const jobOutcomes = worker.logs.slice(from.worker).filter((line) => JOB_OUTCOMES.has(line.action ?? ''));
    expect(jobOutcomes.filter((line) => line.level !== 'warn')).toEqual([]);
    console.log(`outage lines (and ${jobOutcomes.length} job outcome warnings)\nworker:\n  ${summary(workerLines).join('\n  ')}\napi (http.error 503s not shown):\n  ${summary(apiLines.filter((line) => line.action !== 'http.error')).join('\n  ')}`);
    // Nothing outside the JSON log (console.error dumps), and no worker error line.
    expect(summary(workerLines.filter((line) => line.level === undefined || line.level === 'error' || line.level === 'fatal'))).toEqual([]);
    expect(summary(apiLines.filter((line) => line.level === undefined))).toEqual([]);
    // A few warnings: per process and kind (redis.error, worker.redis_unavailable, worker.job_lock_lost, queue.error,
    // queue_events.error) one line, and one more per kind for an outage straddling its 10 s interval.
    expect(workerLines.length).toBeLessThanOrEqual(8);
    expect(apiLines.filter((line) => line.action !== 'http.error' && line.action !== 'job.poll_failed').length).toBeLessThanOrEqual(8);
  };

  it('frozen (SIGSTOP) for 8 s while the worker holds jobs', async () => {
    const api = await stack.start('api', { REQUEST_WAIT_MS: '100' }, redis);
    const worker = await stack.start('worker', {}, redis);
    await backlog(api);
    const from = { api: api.logs.length, worker: worker.logs.length };
    process.kill(redis.pid, 'SIGSTOP');
    try {
      await sleep(OUTAGE_MS);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await newJobCompletes(api);
    // The errors of the jobs held come when Redis answers again: give the last ones a moment.
    await sleep(3000);
    expectFewLines(api, worker, from);
    await Promise.all([api.stop(), worker.stop()]);
  });

  it('killed (SIGKILL) and restarted empty after 8 s while the worker holds jobs', async () => {
    const api = await stack.start('api', { REQUEST_WAIT_MS: '100' }, redis);
    const worker = await stack.start('worker', {}, redis);
    await backlog(api);
    const from = { api: api.logs.length, worker: worker.logs.length };
    await redis.kill('SIGKILL');
    await sleep(OUTAGE_MS);
    restarted = await TestRedis.start(redis.port);
    await newJobCompletes(api);
    await sleep(3000);
    expectFewLines(api, worker, from);
    await Promise.all([api.stop(), worker.stop()]);
  });
});
