/**
 * Paired A/B of two builds of the API: `node dist/bench/api-pair.js <checkout A> <checkout B>` (each built, with its
 * own dist/). Per round it starts two whole stacks at once, each with its own redis-server, a worker that does no
 * work (bench/stub-worker.ts) and the API of its checkout, and loads both for the same seconds with the same
 * closed-loop clients. Both sides share the machine at the same moments, so its drift (tens of percent over minutes
 * on a shared host, more than most changes buy) moves both alike: A/A rounds read within ±5 %. Prints each round's
 * API, stub-worker and Redis CPU ms per request (/proc) and B ÷ A for the API, then the medians.
 * PAIR_ROUNDS (4), PAIR_SECONDS (10), PAIR_CLIENTS (16 a side); PAIR_ENV_A / PAIR_ENV_B: JSON env for one side.
 * Loopback only; nothing is left running.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { jemallocEnv, REPO_ROOT } from '../test/support/app-process';
import { freePort } from '../test/support/free-port';
import { until } from '../test/support/load';
import { TestRedis } from '../test/support/test-redis';
import { cpuMs } from './proc-stats';
import { round } from './stats';
import { BENCH_IMAGES as IMAGES } from './bench-images';
import { post } from './bench-client';

const ROUNDS = Number(process.env.PAIR_ROUNDS ?? 4);
const SECONDS = Number(process.env.PAIR_SECONDS ?? 10);
const CLIENTS = Number(process.env.PAIR_CLIENTS ?? 16);
const STUB = join(REPO_ROOT, 'dist', 'bench', 'stub-worker.js');
const children = new Set<ChildProcess>();
const redises = new Set<TestRedis>();

interface Stack {
  url: string;
  pids: { api: number; worker: number; redis: number };
}

function start(command: string, args: string[], cwd: string, env: Record<string, string>): ChildProcess {
  const child = spawn(command, args, { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** redis-server, stub worker and the checkout's API (the image's runtime settings), ready to serve. */
async function stack(checkout: string, env: Record<string, string>): Promise<Stack> {
  const redis = await TestRedis.start();
  redises.add(redis);
  // As the image runs the apps (AppProcess does the same for the tests and npm run bench).
  const shared = { REDIS_URL: redis.url, QUEUE_PREFIX: 'pair', LOG_LEVEL: 'info', NODE_OPTIONS: '--max-semi-space-size=2', ...jemallocEnv(), ...env };
  const worker = start(process.execPath, [STUB], REPO_ROOT, shared);
  const port = await freePort();
  const api = start(process.execPath, [join(checkout, 'dist', 'apps', 'api', 'src', 'main.js')], checkout, { ...shared, PORT: String(port), HOST: '127.0.0.1' });
  const url = `http://127.0.0.1:${port}`;
  await until(() => fetch(`${url}/health/live`).then((response) => response.status === 200, () => false), 30_000, `the API of ${checkout}`, 250);
  return { url, pids: { api: api.pid!, worker: worker.pid!, redis: redis.pid } };
}

/** `clients` closed-loop clients until `endAt` (epoch ms); returns the answered requests (any other status throws). */
async function load(url: string, clients: number, endAt: number): Promise<number> {
  let answered = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let i = client; Date.now() < endAt; i++) {
        const image = IMAGES[i % IMAGES.length];
        const status = await post(`${url}/v1/classify?model=mobilenet_v2`, image.type, image.bytes);
        if (status !== 200) throw new Error(`${url} answered ${status}`);
        answered++;
      }
    }),
  );
  return answered;
}

async function stopAll(): Promise<void> {
  const exits = [...children].map((child) => new Promise((done) => child.once('exit', done)));
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(exits);
  await Promise.all([...redises].map((redis) => redis.stop()));
  redises.clear();
}

async function main(): Promise<void> {
  const [a, b] = process.argv.slice(2).map((path) => resolve(path));
  if (!a || !b) throw new Error('usage: node dist/bench/api-pair.js <checkout A> <checkout B>');
  const env = { A: JSON.parse(process.env.PAIR_ENV_A ?? '{}') as Record<string, string>, B: JSON.parse(process.env.PAIR_ENV_B ?? '{}') as Record<string, string> };
  const checkouts = { A: a, B: b };
  const ratios: number[] = [];
  const perSide: Record<'A' | 'B', number[]> = { A: [], B: [] };
  console.log(`A: ${a} ${JSON.stringify(env.A)}; B: ${b} ${JSON.stringify(env.B)}; ${ROUNDS} rounds of ${SECONDS} s, ${CLIENTS} clients a side`);
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const sides = r % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const);
      const stacks = {} as Record<'A' | 'B', Stack>;
      for (const side of sides) stacks[side] = await stack(checkouts[side], env[side]);
      await Promise.all(sides.map((side) => load(stacks[side].url, 4, Date.now() + 2000)));
      const before = Object.fromEntries(sides.map((side) => [side, Object.fromEntries(Object.entries(stacks[side].pids).map(([name, pid]) => [name, cpuMs(pid)]))]));
      const endAt = Date.now() + SECONDS * 1000;
      const answered = Object.fromEntries(await Promise.all(sides.map(async (side) => [side, await load(stacks[side].url, CLIENTS, endAt)] as const)));
      const row = Object.fromEntries(
        sides.map((side) => [side, { requests: answered[side], ...Object.fromEntries(Object.entries(stacks[side].pids).map(([name, pid]) => [`${name}CpuMs`, round((cpuMs(pid) - before[side][name]) / answered[side], 3)])) }]),
      ) as Record<'A' | 'B', { requests: number; apiCpuMs: number }>;
      const ratio = round(row.B.apiCpuMs / row.A.apiCpuMs, 3);
      ratios.push(ratio);
      perSide.A.push(row.A.apiCpuMs);
      perSide.B.push(row.B.apiCpuMs);
      console.log(`round ${r} ${JSON.stringify(row)} API B/A ${ratio}`);
      await stopAll();
    }
  } finally {
    await stopAll();
  }
  const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)];
  console.log(`median API CPU ms per request: A ${median(perSide.A)}, B ${median(perSide.B)}; B ÷ A ${median(ratios)}`);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    void stopAll().finally(() => process.exit(1));
  },
);
