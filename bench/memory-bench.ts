/**
 * npm run bench memory -- [--jobs 20000] [--in-flight 1000]
 *
 * Memory of the real service (own redis-server, API and worker on loopback): the API's peak RSS while
 * --in-flight classify requests are open at once, and the worker's RSS after 1,000, half of --jobs and --jobs
 * classify jobs (32 clients), with its growth after warm-up (the 1,000-job reading). Prints a table; the
 * targets are API peak ≤ 250 MB and worker growth ≤ 10 %. BENCH_MEMORY_ENV='{"NAME":"value"}' adds settings to both
 * apps (e.g. NODE_OPTIONS), to weigh a setting's memory against the default in back-to-back runs.
 */
import { AppProcess } from '../test/support/app-process';
import { fixture } from '../test/support/fixtures';
import { TestRedis } from '../test/support/test-redis';
import { CliFlags } from './cli-flags';
import { memory } from './proc-stats';
import { round, runConcurrently } from './stats';
import { post } from './bench-client';

const MB = 1024 * 1024;
const castle = fixture('castle_image.jpg');

async function classify(url: string): Promise<number> {
  return post(`${url}/v1/classify?model=mobilenet_v2`, 'image/jpeg', castle);
}

export async function benchMemory(argv: string[]) {
  const flags = new CliFlags(argv, ['jobs', 'in-flight']);
  const jobs = Math.min(200_000, flags.positive('jobs', 20_000));
  const inFlight = Math.min(10_000, flags.positive('in-flight', 1000));
  const redis = await TestRedis.start();
  // Bench traffic is one anonymous caller: no rate limit; the queue may hold every request in flight.
  const extraEnv = process.env.BENCH_MEMORY_ENV ? (JSON.parse(process.env.BENCH_MEMORY_ENV) as Record<string, string>) : {};
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'mem', RATE_LIMIT_MAX: '0', MAX_QUEUE_DEPTH: String(inFlight * 2), ...extraEnv };
  const started: AppProcess[] = [];
  try {
    const worker = await AppProcess.start('worker', env).then((app) => (started.push(app), app));
    const api = await AppProcess.start('api', env).then((app) => (started.push(app), app));
    // API: every request open at once; RSS sampled every 20 ms (VmHWM, the kernel's own peak, beside it).
    await runConcurrently(50, 8, () => classify(api.url));
    const before = memory(api.pid).rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, memory(api.pid).rss)), 20);
    const statuses: Record<number, number> = {};
    const burst = await runConcurrently(inFlight, inFlight, async () => {
      const status = await classify(api.url);
      statuses[status] = (statuses[status] ?? 0) + 1;
    });
    clearInterval(sampler);
    const apiResult = { inFlight, rssBeforeMb: round(before / MB), peakRssMb: round(peak / MB), vmHwmMb: round(memory(api.pid).peak / MB), burstSeconds: round(burst.wallMs / 1000, 1), statuses };

    // Worker: RSS at checkpoints as the job count grows.
    const checkpoints = [...new Set([1000, Math.round(jobs / 2), jobs])].filter((n) => n <= jobs).sort((a, b) => a - b);
    const workerRss: Record<string, number> = {};
    let done = inFlight + 50;
    const failures: Record<number, number> = {};
    for (const checkpoint of checkpoints) {
      const amount = Math.max(0, checkpoint - done);
      await runConcurrently(amount, 32, async () => {
        const status = await classify(api.url);
        if (status !== 200) failures[status] = (failures[status] ?? 0) + 1;
      });
      done = Math.max(done, checkpoint);
      workerRss[String(checkpoint)] = round(memory(worker.pid).rss / MB);
      console.error(`bench memory: ${done} jobs, worker RSS ${workerRss[String(checkpoint)]} MB, API RSS ${round(memory(api.pid).rss / MB)} MB`);
    }
    const first = workerRss[String(checkpoints[0])];
    const last = workerRss[String(checkpoints[checkpoints.length - 1])];
    const growth = round(((last - first) / first) * 100, 1);
    const result = { env: extraEnv, api: apiResult, worker: { rssMbAtJobs: workerRss, growthPercentAfterWarmup: growth, failures }, apiRssMbAtEnd: round(memory(api.pid).rss / MB) };
    const rows: [string, string | number, string, boolean | undefined][] = [
      [`API RSS before the burst (MB)`, apiResult.rssBeforeMb, '', undefined],
      [`API peak RSS, ${inFlight} in flight (MB; sampled / VmHWM)`, `${apiResult.peakRssMb} / ${apiResult.vmHwmMb}`, '≤ 250', apiResult.peakRssMb <= 250],
      [`burst answers (status: count)`, JSON.stringify(statuses), '', undefined],
      ...checkpoints.map((n): [string, number, string, undefined] => [`worker RSS after ${n} jobs (MB)`, workerRss[String(n)], '', undefined]),
      [`worker RSS growth ${checkpoints[0]} → ${checkpoints[checkpoints.length - 1]} jobs (%)`, growth, '≤ 10', growth <= 10],
    ];
    console.log(rows.map(([label, value, target, met]) => `${label.padEnd(52)}${String(value).padStart(14)}  ${target.padEnd(6)} ${met === undefined ? '' : met ? 'ok' : 'MISSED'}`).join('\n'));
    return result;
  } finally {
    await Promise.all(started.map((app) => app.stop()));
    await redis.stop();
  }
}
