import { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { request } from '../support/http';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { FreezingProxy } from '../support/freezing-proxy';
import { until } from '../support/load';
import { TestStack } from '../support/test-stack';

/**
 * The silent stall (taskforcesh/bullmq#4378, #2964, #648): the worker stays connected and running, jobs wait, and
 * nothing is processed. Reproduced with a proxy that goes silent for the worker's blocking fetch connection and
 * for any connection it opens afterwards (BullMQ 6's own watchdog drops the silent BZPOPMIN after its block time,
 * then waits forever for the new connection to become ready), while the worker's other connections work. The
 * stall watchdog must see it, say so (log line, metric, readiness), and with WORKER_STALL_ACTION=exit leave with
 * code 1 for its supervisor.
 */
describe('fault: a worker stalls silently (its fetch connection goes dead without an error)', () => {
  const stack = new TestStack();
  let proxy: FreezingProxy;
  let api: AppProcess;
  const workerEnv = () => ({ REDIS_URL: proxy.url, LOCK_DURATION_MS: '2000', STALLED_INTERVAL_MS: '2000', WORKER_STALL_TIMEOUT_MS: '6000' });
  const queueJobs = async (count: number) => {
    for (let i = 0; i < count; i++) {
      const answer = await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('castle_image.jpg') });
      // 202 once the wait (100 ms) is over; 200 when a working worker was quicker.
      expect([200, 202]).toContain(answer.status);
    }
  };
  let client: Redis;
  const counts = async () => {
    const [wait, prioritized, active] = await Promise.all(['wait', 'prioritized', 'active'].map((list) => (list === 'prioritized' ? client.zcard(`{iiq}:inference:${list}`) : client.llen(`{iiq}:inference:${list}`))));
    return { waiting: wait + prioritized, active };
  };

  beforeAll(async () => {
    await stack.startRedis();
    client = stack.client();
    // Answers 202 at once: the jobs are left in the queue for the worker.
    api = await stack.start('api', { REQUEST_WAIT_MS: '100' });
  });

  beforeEach(async () => {
    proxy = await FreezingProxy.start(stack.redis.port);
  });

  afterEach(() => proxy.stop());

  afterAll(() => stack.stop());

  it('reconnect: seen within the timeout, logged, counted, readiness down; jobs flow again once the path answers', async () => {
    const worker = await stack.start('worker', { ...workerEnv(), WORKER_STALL_ACTION: 'reconnect' });
    const health = `http://127.0.0.1:${worker.logsWith('worker.http_listening')[0].port}`;
    await queueJobs(1);
    await until(async () => (await counts()).waiting === 0 && (await counts()).active === 0, 30_000, 'the first job to be processed');

    proxy.freeze();
    const frozenAt = Date.now();
    // Readiness as a load balancer would see it, every 100 ms while the path is silent.
    const readiness: Array<{ status: number; stall?: string }> = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const ready = await request(`${health}/health/ready`).catch(() => undefined);
        if (ready) readiness.push({ status: ready.status, stall: ready.body?.info?.stall?.status });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    await queueJobs(3);
    const stalled = await worker.waitForLog((line) => line.action === 'worker.stalled', 40_000);
    const stalledAt = Date.parse(String(stalled.time));
    // The stall was real: jobs waited for the whole timeout with none taken, while the worker ran and its other
    // connections answered (the watchdog counted them through its own).
    expect(stalled).toMatchObject({ level: 'error', remedy: 'reconnect' });
    expect(stalled.waiting).toBeGreaterThanOrEqual(1);
    expect(worker.logs.filter((line) => line.action === 'job.started' && Date.parse(String(line.time)) > frozenAt + 1000 && Date.parse(String(line.time)) < stalledAt)).toEqual([]);
    expect(worker.exited).toBe(false);
    const metrics = (await request(`${health}/metrics`)).body as string;
    expect(metrics).toMatch(/worker_stalls_total\{action="reconnect",service="worker"\} 1/);

    proxy.thaw();
    await until(async () => (await counts()).waiting === 0, 40_000, 'the waiting jobs to be taken after the reconnect');
    await worker.waitForLog((line) => line.action === 'worker.stall_recovered', 20_000);
    await until(async () => (await request(`${health}/health/ready`)).status === 200, 10_000, 'readiness back up');
    polling = false;
    await poller;
    // Readiness said so while the worker was stalled.
    expect(readiness.filter((answer) => answer.status === 503 && answer.stall === 'down').length).toBeGreaterThan(0);
    expect((await request(`${health}/metrics`)).body).toMatch(/worker_stalled\{service="worker"\} 0/);
    console.log(`worker stall: seen ${stalledAt - frozenAt} ms after the fetch connection went silent (WORKER_STALL_TIMEOUT_MS 6000); jobs taken again after the path answered`);
    await worker.stop();
  });

  it('a paused queue (bull-board Pause, Queue.pause) is no stall: the worker stays ready and alive, and takes the jobs on resume', async () => {
    const worker = await stack.start('worker', { ...workerEnv(), WORKER_STALL_ACTION: 'exit' });
    const health = `http://127.0.0.1:${worker.logsWith('worker.http_listening')[0].port}`;
    await until(async () => (await counts()).waiting === 0 && (await counts()).active === 0, 30_000, 'the queue to be empty');
    // As an operator pauses it (bull-board's Pause button calls this): the workers take nothing meanwhile.
    const queue = new Queue('inference', { connection: { host: '127.0.0.1', port: stack.redis.port }, prefix: '{iiq}' });
    try {
      await queue.pause();
      await queueJobs(2);
      // Two timeouts and more: a stall would have failed readiness and exited (code 1) by then.
      await new Promise((resolve) => setTimeout(resolve, 14_000));
      expect((await counts()).waiting).toBeGreaterThanOrEqual(1);
      expect(worker.logsWith('worker.stalled')).toEqual([]);
      expect(worker.exited).toBe(false);
      expect((await request(`${health}/health/ready`)).status).toBe(200);
    } finally {
      await queue.resume();
      await queue.close();
    }
    await until(async () => (await counts()).waiting === 0, 30_000, 'the jobs to be taken after the resume');
    await worker.stop();
  });

  it('exit: the stalled worker exits with code 1 for its supervisor', async () => {
    const worker = await stack.start('worker', { ...workerEnv(), WORKER_STALL_ACTION: 'exit' });
    await until(async () => (await counts()).waiting === 0 && (await counts()).active === 0, 30_000, 'the queue to be empty');
    proxy.freeze();
    await queueJobs(2);
    expect(await worker.exitCode(60_000)).toBe(1);
    expect(worker.logsWith('worker.stalled')).toHaveLength(1);
    expect(worker.logsWith('worker.stall_exit')).toHaveLength(1);
    expect((await counts()).waiting).toBeGreaterThanOrEqual(1);
  });
});
