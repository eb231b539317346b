/**
 * npm run bench: measures, in one run on the same images, the in-process pipeline (ORT spinning on and off),
 * the stack's floor (Fastify echo; Fastify + BullMQ round trip, bench/floor.ts), the real service (HTTP →
 * BullMQ → worker) with CPU ms per request per process and Redis commands per request, batching off, ORT
 * spinning on, an optional BENCH_VARIANT_ENV run, and the seed assignment's list-and-poll protocol; prints the
 * ratios, the bill (service − in-process − floor) and the targets, and writes bench/results/latest.json. Every
 * 32-client figure (throughput, CPU per request) is taken in a window at steady state (stats.ts steadyLoad: 1 s of
 * load, then 4 s measured; 2 + 10 s without BENCH_QUICK), the same way for the reference and the service.
 * `npm run bench -- memory` measures RSS instead (memory-bench.ts). Loopback only: it starts its own
 * redis-server, API and worker.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { prepareModelInput } from '@app/imaging';
import { InferenceRuntime, ModelCatalog, ModelExecutor } from '@app/models';
import { inferImage } from '../apps/worker/src/inference/infer-image';
import { AppProcess, REPO_ROOT } from '../test/support/app-process';
import { freePort } from '../test/support/free-port';
import { TestRedis } from '../test/support/test-redis';
import { benchFaces } from './faces-bench';
import { benchFacesQuality } from './faces-quality';
import { benchMemory } from './memory-bench';
import { CpuMeter } from './proc-stats';
import { SeedModelServer, seedClassify } from './seed-protocol';
import { percentile, round, runConcurrently, steadyLoad } from './stats';
import { BENCH_IMAGES as IMAGES } from './bench-images';
import { post } from './bench-client';

const MODEL = 'mobilenet_v2';
const quick = process.env.BENCH_QUICK === '1';
const N = { latency1: quick ? 30 : 100, throughput: quick ? 200 : 600, seedLatency: quick ? 10 : 24, seedThroughput: quick ? 96 : 256 };
/** Every 32-client throughput (the reference's and the service's): completions in a window at steady state (steadyLoad). */
const STEADY = quick ? { warmMs: 1000, windowMs: 4000 } : { warmMs: 2000, windowMs: 10_000 };
const intraOpThreads = Math.max(1, cpus().length);

/** The worker's own decode → announce → batch path, minus Redis and the queue, warmed up. */
async function inProcessPipeline(allowSpinning: boolean, maxBatchSize: number) {
  const catalog = ModelCatalog.load(join(REPO_ROOT, 'models'), { maxBatchSize, maxBatchDelayMs: 2 });
  const model = catalog.get(MODEL);
  const runtime = await InferenceRuntime.start(catalog, { threads: 1, intraOpThreads, allowSpinning });
  const executor = new ModelExecutor(catalog, runtime);
  const pipeline = async (i: number) => (await inferImage(executor, model, async () => IMAGES[i % IMAGES.length].bytes, { maxPixels: 50_000_000, heic: true })).run;
  for (let i = 0; i < 10; i++) await pipeline(i);
  return { model, runtime, executor, pipeline };
}

/**
 * The in-process reference's 32-client throughput (img/s) once more, at the batch size that won for this spinning
 * setting at the start: the machine is shared, so the reference is measured on both sides of the service run.
 */
async function inProcessThroughputAgain(allowSpinning: boolean, maxBatchSize: number): Promise<number> {
  const { runtime, pipeline } = await inProcessPipeline(allowSpinning, maxBatchSize);
  try {
    return round((await steadyLoad(32, pipeline, STEADY)).throughput);
  } finally {
    await runtime.close();
  }
}

async function inProcess(allowSpinning: boolean) {
  const results: Record<string, number> = {};
  for (const maxBatchSize of [1, 8]) {
    const { model, runtime, executor, pipeline } = await inProcessPipeline(allowSpinning, maxBatchSize);
    if (maxBatchSize === 1) {
      const meter = new CpuMeter({ self: process.pid });
      const sequential = await runConcurrently(N.latency1, 1, pipeline);
      results.cpuMsOneClient = meter.per(N.latency1).self;
      results.p50Batch1Ms = percentile(sequential.latencies, 50);
    }
    const loaded = await steadyLoadWithCpu(32, pipeline, { self: process.pid });
    results[`cpuMsBatch${maxBatchSize}`] = loaded.cpuMs.self;
    results[`throughputBatch${maxBatchSize}`] = loaded.throughput;
    // The model step alone: pre-decoded tensors, so decoding does not hide the batching effect.
    const tensors = await Promise.all(IMAGES.map((image) => prepareModelInput(image.bytes, model.preprocess, { maxPixels: 50_000_000, heic: true })));
    const modelOnly = await runConcurrently(N.throughput, 32, (i) => executor.run(MODEL, tensors[i % tensors.length].tensor));
    results[`modelStepBatch${maxBatchSize}`] = (N.throughput / modelOnly.wallMs) * 1000;
    await runtime.close();
  }
  const bestBatch = results.throughputBatch8 >= results.throughputBatch1 ? 8 : 1;
  return {
    allowSpinning,
    throughput: Math.max(results.throughputBatch1, results.throughputBatch8),
    bestBatch,
    /** CPU ms per image of this whole process (every thread), one client and 32 clients at the best batch. */
    cpuMsOneClient: round(results.cpuMsOneClient, 2),
    cpuMsClients32: round(results[`cpuMsBatch${bestBatch}`], 2),
    throughputBatch1: round(results.throughputBatch1),
    throughputBatch8: round(results.throughputBatch8),
    p50Batch1Ms: round(results.p50Batch1Ms, 2),
    modelStepBatch1: round(results.modelStepBatch1),
    modelStepBatch8: round(results.modelStepBatch8),
  };
}

/** steadyLoad (STEADY) with CPU ms per request of each process in `pids` over the same window; `extra` hooks run beside. */
async function steadyLoadWithCpu(concurrency: number, task: (i: number) => Promise<unknown>, pids: Record<string, number>, extra: { open?: () => unknown; close?: () => unknown } = {}) {
  let meter: CpuMeter | undefined;
  let used: Record<string, number> = {};
  const window = await steadyLoad(concurrency, task, STEADY, {
    open: () => {
      meter = new CpuMeter(pids);
      return extra.open?.();
    },
    close: () => {
      used = meter!.per(1);
      return extra.close?.();
    },
  });
  return { ...window, cpuMs: Object.fromEntries(Object.entries(used).map(([name, ms]) => [name, ms / Math.max(1, window.completed)])) };
}

/** One classify request with the i-th bench image (in turn); true when it was answered 200. */
async function classifyImage(url: string, i: number): Promise<boolean> {
  const image = IMAGES[i % IMAGES.length];
  return (await post(`${url}/v1/classify?model=${MODEL}`, image.type, image.bytes)) === 200;
}

/** 32 closed-loop HTTP clients at steady state (steadyLoad): throughput, latency percentiles, CPU ms per request per process, and Redis commands per request when given `redis`. */
async function serviceSteady(url: string, pids: Record<string, number>, redis?: TestRedis) {
  let failures = 0;
  let commandsAtOpen = 0;
  let commandsAtClose = 0;
  const window = await steadyLoadWithCpu(
    32,
    async (i) => {
      if (!(await classifyImage(url, i))) failures++;
    },
    pids,
    redis ? { open: async () => (commandsAtOpen = await redisCommandCount(redis)), close: async () => (commandsAtClose = await redisCommandCount(redis)) } : {},
  );
  if (failures > 0) throw new Error(`${failures} service requests failed`);
  return {
    stats: { throughput: round(window.throughput), p50: round(percentile(window.latencies, 50), 1), p95: round(percentile(window.latencies, 95), 1), p99: round(percentile(window.latencies, 99), 1) },
    cpuMs: window.cpuMs,
    redisCommandsPerRequest: round((commandsAtClose - commandsAtOpen) / Math.max(1, window.completed), 1),
  };
}

/** `amount` classify requests over HTTP with `connections` concurrent clients; every latency is kept for exact percentiles. */
async function serviceRun(url: string, connections: number, amount: number) {
  let failures = 0;
  const run = await runConcurrently(amount, connections, async (i) => {
    if (!(await classifyImage(url, i))) failures++;
  });
  if (failures > 0) throw new Error(`${failures} of ${amount} service requests failed`);
  return {
    throughput: round((amount / run.wallMs) * 1000),
    p50: round(percentile(run.latencies, 50), 1),
    p95: round(percentile(run.latencies, 95), 1),
    p99: round(percentile(run.latencies, 99), 1),
  };
}

/**
 * Requests before any measured run, so the service's fresh processes are measured warm, as the in-process reference
 * is (it runs in this process after the earlier runs compiled its code): V8 optimises hot functions only after some
 * hundreds of calls. One bench (2026-12-01) measured the API at 1.3 ms of CPU per request after 60 requests, and
 * 0.9 ms over 1,500 requests after 100.
 */
async function warmUp(url: string): Promise<void> {
  await serviceRun(url, 32, Math.max(300, N.throughput));
}

async function redisCommandCount(redis: TestRedis): Promise<number> {
  const client = redis.client();
  try {
    const info = await client.info('commandstats');
    return [...info.matchAll(/calls=(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
  } finally {
    client.disconnect();
  }
}

async function commandCalls(redis: TestRedis): Promise<Record<string, number>> {
  const client = redis.client();
  try {
    return await TestRedis.commandCalls(client);
  } finally {
    client.disconnect();
  }
}

/** Redis commands per request by name (inside Lua scripts included), most frequent first. */
function commandsPerRequest(before: Record<string, number>, after: Record<string, number>, requests: number): Record<string, number> {
  const entries = Object.entries(after).map(([name, count]) => [name, round((count - (before[name] ?? 0)) / requests, 2)] as const);
  return Object.fromEntries(entries.filter(([, perRequest]) => perRequest > 0).sort((a, b) => b[1] - a[1]));
}

async function service(redis: TestRedis, env: Record<string, string>, prefix: string, measureLatency: boolean) {
  const fullEnv = { REDIS_URL: redis.url, QUEUE_PREFIX: prefix, LOG_LEVEL: 'debug', ORT_INTRA_OP_THREADS: String(intraOpThreads), ...env };
  const worker = await AppProcess.start('worker', fullEnv);
  const api = await AppProcess.start('api', { ...fullEnv, LOG_LEVEL: 'info' });
  try {
    await warmUp(api.url);
    const out: Record<string, unknown> = {};
    // client: this process, the load generator, which shares the machine's cores with the service.
    const pids = { api: api.pid, worker: worker.pid, redis: redis.pid, client: process.pid };
    if (measureLatency) {
      const before = await redisCommandCount(redis);
      const calls = await commandCalls(redis);
      const meter = new CpuMeter(pids);
      const single = await serviceRun(api.url, 1, N.latency1);
      out.cpuMsOneClient = roundAll(meter.per(N.latency1));
      out.redisCommandsPerRequest = round(((await redisCommandCount(redis)) - before) / N.latency1, 1);
      out.redisCommandsByName = commandsPerRequest(calls, await commandCalls(redis), N.latency1);
      out.oneClient = single;
    }
    const enqueuedBefore32 = api.logsWith('job.enqueued').length;
    const steady = await serviceSteady(api.url, pids, redis);
    out.clients32 = steady.stats;
    out.cpuMsClients32 = roundAll(steady.cpuMs);
    out.redisCommandsPerRequestClients32 = steady.redisCommandsPerRequest;
    // Classify coalescing (CLASSIFY_COALESCE_*): queue jobs per request at 32 clients (1: every request its own job).
    const enqueued32 = api.logsWith('job.enqueued').slice(enqueuedBefore32);
    out.queueJobsPerRequestClients32 = round(new Set(enqueued32.map((line) => String(line.batchJobId ?? line.jobId))).size / Math.max(1, enqueued32.length), 3);
    // Redis' own CPU per request at load (one node: on a Cluster the queue's whole slot lives on one primary too),
    // and so how many requests per second one Redis core carries before Redis, not the workers, is the limit.
    const redisCpu = Number((out.cpuMsClients32 as Record<string, number>).redis);
    out.redisCpuMsPerRequest = round(redisCpu, 3);
    out.requestsPerRedisCoreSecond = redisCpu > 0 ? Math.round(1000 / redisCpu) : 'n/a';
    // A coalesced job's images each log their own model batch (job.item_completed).
    const imageLines = [...worker.logsWith('job.completed').filter((line) => line.jobName !== 'classify-batch'), ...worker.logsWith('job.item_completed')];
    const batchSizes = imageLines.map((line) => Number(line.batchSize ?? 1));
    out.meanBatchSize = round(batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, batchSizes.length), 2);
    const delays = worker.logsWith('worker.heartbeat').map((line) => Number(line.eventLoopDelayMaxMs ?? 0));
    out.workerEventLoopDelayMaxMs = delays.length ? Math.max(...delays) : null;
    return out;
  } finally {
    await Promise.all([api.stop(), worker.stop()]);
  }
}

function roundAll(values: Record<string, number>, digits = 2): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [key, round(value, digits)]));
}

/** One bench/floor.ts process (echo, api or worker), ready. */
async function startFloor(role: 'echo' | 'api' | 'worker', env: Record<string, string>): Promise<{ child: ChildProcess; url: string; stop: () => Promise<void> }> {
  const port = role === 'worker' ? 0 : await freePort();
  const child = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'bench', 'floor.js'), role], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', PORT: String(port), NODE_OPTIONS: '--max-semi-space-size=2', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"ready":true')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`floor ${role} exited with ${code} before it was ready`)));
  });
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  return { child, url: `http://127.0.0.1:${port}`, stop };
}

/**
 * The stack's floor on the same images: a Fastify echo (HTTP alone), and Fastify + a BullMQ round trip with the
 * service's payload handling and a worker that does no work (bench/floor.ts). Same clients, same CPU accounting.
 */
async function floor(redis: TestRedis) {
  const echo = await startFloor('echo', {});
  const out: Record<string, any> = {};
  try {
    await warmUp(echo.url);
    const meter = new CpuMeter({ api: echo.child.pid! });
    out.echoOneClient = await serviceRun(echo.url, 1, N.latency1);
    out.echoCpuMsOneClient = roundAll(meter.per(N.latency1), 3);
    const steady = await serviceSteady(echo.url, { api: echo.child.pid! });
    out.echoClients32 = steady.stats;
    out.echoCpuMsClients32 = roundAll(steady.cpuMs, 3);
  } finally {
    await echo.stop();
  }
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'floor' };
  const worker = await startFloor('worker', env);
  const api = await startFloor('api', env);
  try {
    const pids = { api: api.child.pid!, worker: worker.child.pid!, redis: redis.pid };
    await warmUp(api.url);
    const before = await redisCommandCount(redis);
    const calls = await commandCalls(redis);
    const meter = new CpuMeter(pids);
    out.queueOneClient = await serviceRun(api.url, 1, N.latency1);
    out.queueCpuMsOneClient = roundAll(meter.per(N.latency1), 3);
    out.queueRedisCommandsPerRequest = round(((await redisCommandCount(redis)) - before) / N.latency1, 1);
    out.queueRedisCommandsByName = commandsPerRequest(calls, await commandCalls(redis), N.latency1);
    const steady = await serviceSteady(api.url, pids);
    out.queueClients32 = steady.stats;
    out.queueCpuMsClients32 = roundAll(steady.cpuMs, 3);
  } finally {
    await Promise.all([api.stop(), worker.stop()]);
  }
  return out;
}

const CPU_COLUMNS = ['api', 'worker', 'redis'] as const;

/**
 * The bill: per request, what each layer costs in latency (p50, one client) and CPU (ms, per process, from
 * /proc), the stack's floor beside the service, and the service's overhead above floor + in-process work.
 * Returns the figures and a printable table whose last block marks each target MISSED or ok.
 */
function billOf(inprocess: any, stackFloor: any, svc: any) {
  const sum = (cpu: Record<string, number>) => CPU_COLUMNS.reduce((total, name) => total + (cpu[name] ?? 0), 0);
  const workOne = inprocess.cpuMsOneClient;
  const work32 = inprocess.cpuMsClients32;
  const floorAddedP50 = stackFloor.queueOneClient.p50;
  const addedP50 = svc.oneClient.p50 - inprocess.p50Batch1Ms;
  const overhead = {
    latencyP50OneClientMs: round(addedP50 - floorAddedP50, 2),
    cpuMsOneClient: round(sum(svc.cpuMsOneClient) - workOne - sum(stackFloor.queueCpuMsOneClient), 2),
    cpuMsClients32: round(sum(svc.cpuMsClients32) - work32 - sum(stackFloor.queueCpuMsClients32), 2),
    apiCpuMsOneClient: round(svc.cpuMsOneClient.api - stackFloor.queueCpuMsOneClient.api, 2),
    apiCpuMsClients32: round(svc.cpuMsClients32.api - stackFloor.queueCpuMsClients32.api, 2),
    workerCpuMsClients32: round(svc.cpuMsClients32.worker - work32 - stackFloor.queueCpuMsClients32.worker, 2),
  };
  const throughputRatio = svc.clients32.throughput / inprocess.throughput;
  const targets: [string, number, string, boolean][] = [
    ['service / in-process throughput, 32 clients', round(throughputRatio, 3), '≥ 0.85', throughputRatio >= 0.85],
    ['added p50, 1 client (ms)', round(addedP50, 2), '≤ 3', addedP50 <= 3],
    ['added p50 − floor p50, 1 client (ms)', overhead.latencyP50OneClientMs, '≤ 1.5', overhead.latencyP50OneClientMs <= 1.5],
    ['API CPU per request, 1 client (ms)', svc.cpuMsOneClient.api, '≤ 0.8', svc.cpuMsOneClient.api <= 0.8],
    ['API CPU per request, 32 clients (ms)', svc.cpuMsClients32.api, '≤ 0.8', svc.cpuMsClients32.api <= 0.8],
    ['Redis commands per request, 1 client', svc.redisCommandsPerRequest, '≤ 40', svc.redisCommandsPerRequest <= 40],
    // Under load, where Redis' cost matters, coalesced classify jobs divide BullMQ's ~77 commands by the group size.
    ['Redis commands per request, 32 clients', svc.redisCommandsPerRequestClients32, '≤ 40', svc.redisCommandsPerRequestClients32 <= 40],
  ];
  const cell = (value: unknown, width = 8) => String(value ?? '–').padStart(width);
  const cpu = (values: Record<string, number> | undefined) => CPU_COLUMNS.map((name) => cell(values?.[name])).join('');
  const line = (label: string, p50: unknown, cpuOne: Record<string, number> | undefined, commands: unknown, rate: unknown, cpu32: Record<string, number> | undefined) =>
    `${label.padEnd(34)}${cell(p50)}${cpu(cpuOne)}${cell(commands)}  |${cell(rate)}${cpu(cpu32)}`;
  const lines = [
    'Per request: p50 latency (ms) and CPU ms per process (/proc utime+stime, all threads)',
    `${''.padEnd(34)}${'--------- 1 client ----------------------'.padEnd(40)}  | ------- 32 clients ------------`,
    `${''.padEnd(34)}${cell('p50')}${cell('api')}${cell('worker')}${cell('redis')}${cell('cmds')}  |${cell('req/s')}${cell('api')}${cell('worker')}${cell('redis')}`,
    line('in-process reference (all threads)', inprocess.p50Batch1Ms, { worker: workOne }, '', round(inprocess.throughput), { worker: work32 }),
    line('floor: Fastify echo', stackFloor.echoOneClient.p50, stackFloor.echoCpuMsOneClient, '', stackFloor.echoClients32.throughput, stackFloor.echoCpuMsClients32),
    line('floor: Fastify + BullMQ round trip', stackFloor.queueOneClient.p50, stackFloor.queueCpuMsOneClient, stackFloor.queueRedisCommandsPerRequest, stackFloor.queueClients32.throughput, stackFloor.queueCpuMsClients32),
    line('service', svc.oneClient.p50, svc.cpuMsOneClient, svc.redisCommandsPerRequest, svc.clients32.throughput, svc.cpuMsClients32),
    line(
      'service − in-process − floor',
      overhead.latencyP50OneClientMs,
      { api: overhead.apiCpuMsOneClient, worker: round(svc.cpuMsOneClient.worker - workOne - stackFloor.queueCpuMsOneClient.worker, 2), redis: round(svc.cpuMsOneClient.redis - stackFloor.queueCpuMsOneClient.redis, 2) },
      round(svc.redisCommandsPerRequest - stackFloor.queueRedisCommandsPerRequest, 1),
      '',
      { api: overhead.apiCpuMsClients32, worker: overhead.workerCpuMsClients32, redis: round(svc.cpuMsClients32.redis - stackFloor.queueCpuMsClients32.redis, 2) },
    ),
    `total CPU overhead per request above in-process + floor: ${overhead.cpuMsOneClient} ms (1 client), ${overhead.cpuMsClients32} ms (32 clients)`,
    `load generator (this process, node:http keep-alive; not in the columns above) CPU ms per request against the service: ${svc.cpuMsOneClient.client} (1 client), ${svc.cpuMsClients32.client} (32 clients)`,
    '',
    'Targets',
    ...targets.map(([label, value, target, met]) => `${label.padEnd(46)}${cell(value)}  ${target.padEnd(7)} ${met ? 'ok' : 'MISSED'}`),
  ];
  return { overhead, targets: targets.map(([label, value, target, met]) => ({ label, value, target, met })), table: lines.join('\n') };
}

async function seedProtocol(redis: TestRedis) {
  const catalog = ModelCatalog.load(join(REPO_ROOT, 'models'));
  const runtime = await InferenceRuntime.start(catalog, { threads: 1, intraOpThreads });
  const executor = new ModelExecutor(catalog, runtime);
  const client = redis.client();
  const serverClient = client.duplicate();
  const server = new SeedModelServer(serverClient, executor, catalog.get(MODEL));
  server.start();
  try {
    const one = await runConcurrently(N.seedLatency, 1, (i) => seedClassify(client, IMAGES[i % IMAGES.length].bytes));
    const many = await runConcurrently(N.seedThroughput, 32, (i) => seedClassify(client, IMAGES[i % IMAGES.length].bytes));
    return { p50OneClientMs: round(percentile(one.latencies, 50)), throughput32: round((N.seedThroughput / many.wallMs) * 1000) };
  } finally {
    await server.stop();
    serverClient.disconnect();
    client.disconnect();
    await runtime.close();
  }
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode && !['classify', 'faces', 'faces-quality', 'memory'].includes(mode)) throw new Error(`unknown bench "${mode}" (available: classify, faces, faces-quality, memory)`);
  if (mode === 'memory') {
    const memoryResults = await benchMemory(process.argv.slice(3));
    mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'bench', 'results', 'memory-latest.json'), JSON.stringify({ when: new Date().toISOString(), ...memoryResults }, null, 2) + '\n');
    return;
  }
  if (mode === 'faces-quality') {
    const quality = await benchFacesQuality();
    console.log(JSON.stringify(quality, null, 2));
    mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'bench', 'results', 'faces-quality-latest.json'), JSON.stringify({ when: new Date().toISOString(), ...quality }, null, 2) + '\n');
    return;
  }
  if (mode === 'faces') {
    const faces = await benchFaces(process.argv.slice(3));
    console.log(Object.entries(faces).map(([key, value]) => `${key.padEnd(24)}  ${typeof value === 'object' ? JSON.stringify(value) : value}`).join('\n'));
    mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'bench', 'results', 'faces-latest.json'), JSON.stringify({ when: new Date().toISOString(), ...faces }, null, 2) + '\n');
    return;
  }
  const redis = await TestRedis.start();
  try {
    // The reference gets its best: ORT's intra-op spinning on and off, the faster throughput wins, and the
    // lower one-client p50 of the two is the latency reference.
    console.error('bench: in-process, ORT spinning off…');
    const inprocessQuiet = await inProcess(false);
    console.error('bench: in-process, ORT spinning on…');
    const inprocessSpinning = await inProcess(true);
    const inprocess: Awaited<ReturnType<typeof inProcess>> & { throughputBefore?: number; throughputAfter?: number } = { ...(inprocessSpinning.throughput > inprocessQuiet.throughput ? inprocessSpinning : inprocessQuiet) };
    inprocess.p50Batch1Ms = Math.min(inprocessQuiet.p50Batch1Ms, inprocessSpinning.p50Batch1Ms);
    console.error('bench: stack floor (Fastify echo, Fastify + BullMQ round trip)…');
    const stackFloor = await floor(redis);
    console.error('bench: service (default batching)…');
    const svc = (await service(redis, {}, 'bench', true)) as any;
    // The shared machine's speed drifts by tens of percent over minutes (one run's reference measured 111 img/s, the
    // next 159, with the service at 99–101 in both): the reference is measured again right after the service, with
    // the best of the same two settings as before, and the ratio uses the mean of the two bests.
    console.error('bench: in-process again, after the service…');
    inprocess.throughputBefore = round(inprocess.throughput);
    const quietAfter = await inProcessThroughputAgain(false, inprocessQuiet.bestBatch);
    inprocess.throughputAfter = Math.max(quietAfter, await inProcessThroughputAgain(true, inprocessSpinning.bestBatch));
    inprocess.throughput = round((inprocess.throughputBefore + inprocess.throughputAfter) / 2);
    console.error('bench: service with MAX_BATCH_SIZE=1…');
    const noBatch = (await service(redis, { MAX_BATCH_SIZE: '1' }, 'bench1', false)) as any;
    console.error('bench: service with ORT_ALLOW_SPINNING=1…');
    const spinning = (await service(redis, { ORT_ALLOW_SPINNING: '1' }, 'benchspin', true)) as any;
    // BENCH_VARIANT_ENV='{"NAME":"value",...}': one more service run with these settings, to weigh a lever in the same run.
    const variantEnv = process.env.BENCH_VARIANT_ENV ? (JSON.parse(process.env.BENCH_VARIANT_ENV) as Record<string, string>) : undefined;
    let variant: any;
    if (variantEnv) {
      console.error(`bench: service with ${JSON.stringify(variantEnv)}…`);
      variant = await service(redis, variantEnv, 'benchvariant', true);
    }
    console.error('bench: seed protocol…');
    const seed = await seedProtocol(redis);

    const ratios = {
      serviceOverInprocessThroughput: round(svc.clients32.throughput / inprocess.throughput, 3),
      addedP50LatencyMs: round(svc.oneClient.p50 - inprocess.p50Batch1Ms, 2),
      batchingGainService: round(svc.clients32.throughput / noBatch.clients32.throughput, 3),
      batchingGainModelStep: round(inprocess.modelStepBatch8 / inprocess.modelStepBatch1, 3),
      p50VsSeedProtocol: round(seed.p50OneClientMs / svc.oneClient.p50, 1),
    };
    const bill = billOf(inprocess, stackFloor, svc);
    const results = {
      when: new Date().toISOString(),
      machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      model: MODEL,
      images: IMAGES.map((image) => image.name),
      settings: { inferenceThreads: 1, ortIntraOpThreads: intraOpThreads },
      inprocess,
      inprocessBySpinning: { off: inprocessQuiet, on: inprocessSpinning },
      service: svc,
      serviceNoBatching: noBatch,
      serviceOrtSpinning: spinning,
      serviceVariant: variant && { env: variantEnv, ...variant },
      seedProtocol: seed,
      stackFloor,
      ratios,
      bill,
      targets: { serviceOverInprocessThroughput: '≥ 0.85', addedP50LatencyMs: '≤ 3', addedP50OverFloorMs: '≤ 1.5', apiCpuMsPerRequest: '≤ 0.8', redisCommandsPerRequest: '≤ 40', batchingGainModelStep: '≥ 1.3' },
    };
    const rows: [string, string | number][] = [
      ['inprocess throughput (img/s, best batch ' + inprocess.bestBatch + '; mean of before / after the service)', `${round(inprocess.throughput)} (${inprocess.throughputBefore} / ${inprocess.throughputAfter})`],
      ['inprocess throughput / p50 / CPU ms per img, ORT spinning off', `${round(inprocessQuiet.throughput)} / ${inprocessQuiet.p50Batch1Ms} / ${inprocessQuiet.cpuMsClients32}`],
      ['inprocess throughput / p50 / CPU ms per img, ORT spinning on', `${round(inprocessSpinning.throughput)} / ${inprocessSpinning.p50Batch1Ms} / ${inprocessSpinning.cpuMsClients32}`],
      ['inprocess p50 latency batch 1 (ms)', inprocess.p50Batch1Ms],
      ['inprocess model step batch 1 / 8 (img/s)', `${inprocess.modelStepBatch1} / ${inprocess.modelStepBatch8}`],
      ['service throughput 32 clients (req/s)', svc.clients32.throughput],
      ['service p50/p95/p99 1 client (ms)', `${svc.oneClient.p50} / ${svc.oneClient.p95} / ${svc.oneClient.p99}`],
      ['service p50/p95/p99 32 clients (ms)', `${svc.clients32.p50} / ${svc.clients32.p95} / ${svc.clients32.p99}`],
      ['service mean batch size at 32 clients', svc.meanBatchSize],
      ['service Redis commands per request (incl. inside Lua)', svc.redisCommandsPerRequest],
      ['service Redis commands per request at 32 clients', svc.redisCommandsPerRequestClients32],
      ['service queue jobs per request at 32 clients (coalescing)', svc.queueJobsPerRequestClients32],
      ['service Redis CPU per request at 32 clients (ms)', svc.redisCpuMsPerRequest],
      ['requests/s one Redis core carries at that cost', svc.requestsPerRedisCoreSecond],
      ['worker event-loop delay max (ms)', svc.workerEventLoopDelayMaxMs ?? 'n/a'],
      ['service throughput, MAX_BATCH_SIZE=1 (req/s)', noBatch.clients32.throughput],
      ['service ORT_ALLOW_SPINNING=1: req/s 32 clients / p50 1 client', `${spinning.clients32.throughput} / ${spinning.oneClient.p50}`],
      ['service ORT_ALLOW_SPINNING=1: worker CPU ms/req 1 / 32 clients', `${spinning.cpuMsOneClient.worker} / ${spinning.cpuMsClients32.worker}`],
      ['seed protocol p50 1 client (ms)', seed.p50OneClientMs],
      ['seed protocol throughput 32 clients (req/s)', seed.throughput32],
      ['RATIO service / inprocess throughput (≥ 0.85)', ratios.serviceOverInprocessThroughput],
      ['RATIO added p50 latency, ms (≤ 3)', ratios.addedP50LatencyMs],
      ['RATIO batching gain, model step (≥ 1.3)', ratios.batchingGainModelStep],
      ['RATIO batching gain, service', ratios.batchingGainService],
      ['RATIO seed p50 / our p50', ratios.p50VsSeedProtocol],
    ];
    const width = Math.max(...rows.map(([label]) => label.length));
    console.log(rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n'));
    console.log('\n' + bill.table);
    if (variant) {
      console.log(`\nvariant ${JSON.stringify(variantEnv)}, against the service above:`);
      console.log(`  p50 1 client ${variant.oneClient.p50} ms (service ${svc.oneClient.p50}); req/s 32 clients ${variant.clients32.throughput} (${svc.clients32.throughput})`);
      console.log(`  CPU ms/req 1 client ${JSON.stringify(variant.cpuMsOneClient)} (${JSON.stringify(svc.cpuMsOneClient)})`);
      console.log(`  CPU ms/req 32 clients ${JSON.stringify(variant.cpuMsClients32)} (${JSON.stringify(svc.cpuMsClients32)})`);
      console.log(`  Redis commands per request 1 client ${variant.redisCommandsPerRequest} (${svc.redisCommandsPerRequest}); 32 clients ${variant.redisCommandsPerRequestClients32} (${svc.redisCommandsPerRequestClients32})`);
      console.log(`  queue jobs per request 32 clients ${variant.queueJobsPerRequestClients32} (${svc.queueJobsPerRequestClients32}); mean model batch ${variant.meanBatchSize} (${svc.meanBatchSize}); p50 32 clients ${variant.clients32.p50} ms (${svc.clients32.p50})`);
    }
    const byName = (counts: Record<string, number>) => Object.entries(counts).slice(0, 14).map(([name, n]) => `${name} ${n}`).join(', ');
    console.log(`\nRedis commands per request, 1 client (service): ${byName(svc.redisCommandsByName)}`);
    console.log(`Redis commands per request, 1 client (floor):   ${byName(stackFloor.queueRedisCommandsByName)}`);
    mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'bench', 'results', 'latest.json'), JSON.stringify(results, null, 2) + '\n');
    console.log(`\nwritten to bench/results/latest.json`);
  } finally {
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
