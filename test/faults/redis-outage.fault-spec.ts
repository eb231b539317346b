import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, request } from '../support/http';
import { ClassifyOutcome, classifyOnce, classifySamples, until } from '../support/load';
import { TestRedis } from '../support/test-redis';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Redis stops for 10 s under a steady load, then comes back on the same address with its append-only file
 * (as in docker-compose.yml). While it is down the API answers 503 at once; afterwards API and worker
 * reconnect by themselves; jobs that were queued before the stop are still there and finish.
 */
describe('fault: Redis down and back (with persistence)', () => {
  const REQUEST_WAIT_MS = 8000;
  let dataDir: string;
  let redis: TestRedis;
  const apps: AppProcess[] = [];
  const env = () => ({ REDIS_URL: redis.url, REQUEST_WAIT_MS: String(REQUEST_WAIT_MS) });

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'iiq-aof-'));
    redis = await TestRedis.start(undefined, { appendOnlyDir: dataDir });
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await redis?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('10 s outage under load: 503 at once while down, served again by itself after the restart, nothing queued is lost', async () => {
    const [api, worker] = await Promise.all([AppProcess.start('api', env()), AppProcess.start('worker', env())]);
    apps.push(api, worker);
    const samples = classifySamples();
    const outcomes: Promise<ClassifyOutcome>[] = [];
    let index = 0;
    // Open-loop load: one request every 100 ms whatever happens to the earlier ones.
    const loadTimer = setInterval(() => {
      outcomes.push(classifyOnce(api.url, samples[index % samples.length], index++, REQUEST_WAIT_MS + 10_000));
    }, 100);

    let stoppedAt = 0;
    let restartedAt = 0;
    let metricsWhileDown: { status: number; body: unknown; ms?: number } | undefined;
    try {
      await sleep(4000);
      await redis.stop();
      stoppedAt = Date.now();
      await sleep(2000);
      // Metrics still answer while Redis is down: the process' own series, without the queue counts it cannot read.
      const scrapeStarted = Date.now();
      metricsWhileDown = await request(`${api.url}/metrics`);
      metricsWhileDown.ms = Date.now() - scrapeStarted;
      await sleep(Math.max(0, stoppedAt + 10_000 - Date.now()));
      redis = await TestRedis.start(redis.port, { appendOnlyDir: dataDir });
      restartedAt = Date.now();
      await sleep(10_000);
    } finally {
      clearInterval(loadTimer);
    }
    const all = await Promise.all(outcomes);

    expect(metricsWhileDown?.status).toBe(200);
    expect(metricsWhileDown!.ms).toBeLessThan(5000);
    expect(String(metricsWhileDown!.body)).toMatch(/^queue_jobs_read_errors_total\{service="api"\} [1-9]/m);
    expect(String(metricsWhileDown!.body)).not.toMatch(/^queue_jobs\{/m);
    expect(String(metricsWhileDown!.body)).toMatch(/^process_resident_memory_bytes/m);

    // Nobody hung: every request was answered, none later than the wait limit (plus the request's own work:
    // reading the body, checks, enqueueing, and the answer; 3 s of it was overrun by 41 ms once on a loaded
    // 2-core CI machine, so 4 s — a hang is the test's concern, and one lasts past 10 s).
    expect(all.filter((o) => o.status === 0)).toEqual([]);
    expect(Math.max(...all.map((o) => o.ms))).toBeLessThan(REQUEST_WAIT_MS + 4000);
    // Sent while Redis was down: refused with 503 SERVICE_UNAVAILABLE, not queued into nowhere.
    const whileDown = all.filter((o) => o.sentAt > stoppedAt + 200 && o.sentAt < restartedAt);
    expect(whileDown.length).toBeGreaterThan(50);
    expect(whileDown.filter((o) => o.status !== 503 || o.code !== 'SERVICE_UNAVAILABLE')).toEqual([]);
    // Every 200 anywhere is the right answer.
    expect(all.filter((o) => o.status === 200 && o.label !== o.expected)).toEqual([]);
    // Back by itself: the first request sent after the restart that succeeded, and all later ones succeed.
    const afterRestart = all.filter((o) => o.sentAt >= restartedAt);
    const firstServed = afterRestart.find((o) => o.status === 200);
    expect(firstServed).toBeDefined();
    expect(afterRestart.filter((o) => o.sentAt > firstServed!.sentAt && o.status !== 200)).toEqual([]);
    expect(String((await request(`${api.url}/metrics`)).body)).toMatch(/^queue_jobs\{queue="[^"]+",state="wait",service="api"\} \d+/m);
    // In flight when Redis stopped: their jobs were persisted; the clients got 202 (or their answer) and the result is readable now.
    const accepted = all.filter((o) => o.status === 202);
    for (const o of accepted) {
      expect((await completedJob(api, o.jobId!)).result.predictions[0].label).toBe(o.expected);
    }
    const refusals = whileDown.map((o) => o.ms).sort((a, b) => a - b);
    console.log(
      `Redis outage: ${all.length} requests, 0 lost; ${whileDown.length} sent while down all got 503 (median ${refusals[refusals.length >> 1]} ms, max ${refusals[refusals.length - 1]} ms); ` +
        `served again ${firstServed!.sentAt + firstServed!.ms - restartedAt} ms after the restart; ${accepted.length} in-flight jobs answered 202 then completed from the persisted queue`,
    );
    expect(api.exited || worker.exited).toBe(false);
    await Promise.all([api.stop(), worker.stop()]);
  });

  it('jobs queued while no worker runs survive a Redis restart and complete afterwards', async () => {
    // A short wait limit so every request is answered 202 at once and left queued.
    const api = await AppProcess.start('api', { ...env(), REQUEST_WAIT_MS: '100' });
    apps.push(api);
    const samples = classifySamples();
    const accepted = await Promise.all(samples.concat(samples).map((sample, i) => classifyOnce(api.url, sample, i, 10_000)));
    expect(accepted.map((o) => o.status)).toEqual(accepted.map(() => 202));
    const form = multipart({ models: 'yolox_nano' });
    form.append('images', new Blob([fixture('castle_image.jpg')]), 'castle_image.jpg');
    const analysis = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    expect(analysis.status).toBe(202);
    const hash = analysis.body.images[0].hash;

    await redis.stop();
    redis = await TestRedis.start(redis.port, { appendOnlyDir: dataDir });
    const worker = await AppProcess.start('worker', env());
    apps.push(worker);

    for (const o of accepted) {
      expect((await completedJob(api, o.jobId!)).result.predictions[0].label).toBe(o.expected);
    }
    await until(async () => (await request(`${api.url}/v1/images/${hash}/results/yolox_nano`)).status === 200, 30_000, 'the analysis result');
    const result = await request(`${api.url}/v1/images/${hash}/results/yolox_nano`);
    expect(result.body.state).toBe('completed');
  });
});

/** The job as GET /v1/jobs/:id shows it once completed (the test fails after 30 s otherwise). */
async function completedJob(api: AppProcess, jobId: string): Promise<any> {
  let body: any;
  await until(
    async () => {
      body = (await request(`${api.url}/v1/jobs/${jobId}`)).body;
      return body?.state === 'completed';
    },
    30_000,
    `job ${jobId} to complete`,
  );
  return body;
}
