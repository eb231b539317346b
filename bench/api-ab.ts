/**
 * Interleaved A/B of two API settings on one Redis and one worker: `node dist/bench/api-ab.js '{"NAME":"value"}'`
 * starts API A with the defaults and API B with those settings, then serves them in alternation (A B, B A, …):
 * per round 40 one-client and 300 32-client classify requests to each, with the API's, the worker's and Redis' CPU
 * ms per request (/proc) and Redis commands per request (INFO commandstats) of the 32-client part. Prints every
 * round and the medians. The machine's other load moves each round; alternating spreads it over both sides.
 * AB_ROUNDS, AB_N1, AB_N32 change the amounts. Loopback only; own redis-server.
 */
import { cpus } from 'node:os';
import { AppProcess } from '../test/support/app-process';
import { TestRedis } from '../test/support/test-redis';
import { cpuMs } from './proc-stats';
import { percentile, round, runConcurrently } from './stats';
import { BENCH_IMAGES as IMAGES } from './bench-images';
import { post } from './bench-client';

const ROUNDS = Number(process.env.AB_ROUNDS ?? 6);
const N1 = Number(process.env.AB_N1 ?? 40);
const N32 = Number(process.env.AB_N32 ?? 300);

async function commandCount(redis: TestRedis): Promise<number> {
  const client = redis.client();
  try {
    return [...(await client.info('commandstats')).matchAll(/calls=(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
  } finally {
    client.disconnect();
  }
}

async function load(url: string, connections: number, amount: number): Promise<{ rps: number; p50: number }> {
  let failures = 0;
  const run = await runConcurrently(amount, connections, async (i) => {
    const image = IMAGES[i % IMAGES.length];
    if ((await post(`${url}/v1/classify?model=mobilenet_v2`, image.type, image.bytes)) !== 200) failures++;
  });
  if (failures > 0) throw new Error(`${failures} of ${amount} requests failed`);
  return { rps: (amount / run.wallMs) * 1000, p50: percentile(run.latencies, 50) };
}

async function main(): Promise<void> {
  const variant = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
  const redis = await TestRedis.start();
  const env = { REDIS_URL: redis.url, RATE_LIMIT_MAX: '0', ORT_INTRA_OP_THREADS: String(Math.max(1, cpus().length)) };
  const apps: AppProcess[] = [];
  try {
    const worker = await AppProcess.start('worker', env);
    apps.push(worker);
    // Each pushed as soon as it runs, so a B that fails to start (a setting it refuses) never leaves A behind.
    const started = async (appEnv: Record<string, string>) => {
      const app = await AppProcess.start('api', appEnv);
      apps.push(app);
      return app;
    };
    const apis = { A: await started(env), B: await started({ ...env, ...variant }) };
    console.log(`A: defaults; B: ${JSON.stringify(variant)}; ${ROUNDS} rounds of ${N1} one-client and ${N32} 32-client requests each`);
    for (const side of ['A', 'B'] as const) await load(apis[side].url, 8, 60);
    const rows: Record<'A' | 'B', Record<string, number>[]> = { A: [], B: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const side of r % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) {
        const api = apis[side];
        const one = await load(api.url, 1, N1);
        const pids = { api: api.pid, worker: worker.pid, redis: redis.pid };
        const cpu0 = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMs(pid)]));
        const commands0 = await commandCount(redis);
        const many = await load(api.url, 32, N32);
        const commands = ((await commandCount(redis)) - commands0) / N32;
        const cpu = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [`${name}CpuMs`, (cpuMs(pid) - cpu0[name]) / N32]));
        const row = { p50OneClient: one.p50, rps32: many.rps, p50Clients32: many.p50, redisCommands32: commands, ...cpu };
        rows[side].push(row);
        console.log(`round ${r} ${side} ${JSON.stringify(Object.fromEntries(Object.entries(row).map(([k, v]) => [k, round(v, 2)])))}`);
      }
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    for (const side of ['A', 'B'] as const) {
      const keys = Object.keys(rows[side][0]);
      console.log(`median ${side} ${JSON.stringify(Object.fromEntries(keys.map((key) => [key, round(median(rows[side].map((row) => row[key])), 2)])))}`);
    }
  } finally {
    await Promise.all(apps.map((app) => app.stop()));
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
