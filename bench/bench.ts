/**
 * npm run bench: measures, in one run on the same images, the in-process pipeline, the real service
 * (HTTP → BullMQ → worker), the seed assignment's list-and-poll protocol, and batching on/off; prints a
 * table and writes bench/results/latest.json. Loopback only: it starts its own redis-server, API and worker.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { prepareModelInput } from '@app/imaging';
import { InferenceRuntime, ModelCatalog, ModelExecutor } from '@app/models';
import { inferImage } from '../apps/worker/src/inference/infer-image';
import { AppProcess, REPO_ROOT } from '../test/support/app-process';
import { TestRedis } from '../test/support/test-redis';
import { benchFaces } from './faces-bench';
import { benchFacesQuality } from './faces-quality';
import { SeedModelServer, seedClassify } from './seed-protocol';
import { percentile, round, runConcurrently } from './stats';

const MODEL = 'mobilenet_v2';
const IMAGES = ['castle_image.jpg', 'cat_kitten_224.png', 'dog_beagle_jemma.png'].map((name) => ({
  name,
  bytes: readFileSync(join(REPO_ROOT, 'test', 'fixtures', name)),
  type: name.endsWith('.png') ? 'image/png' : 'image/jpeg',
}));
const quick = process.env.BENCH_QUICK === '1';
const N = { latency1: quick ? 30 : 100, throughput: quick ? 200 : 600, seedLatency: quick ? 10 : 24, seedThroughput: quick ? 96 : 256 };
const intraOpThreads = Math.max(1, cpus().length);

async function inProcess() {
  const results: Record<string, number> = {};
  for (const maxBatchSize of [1, 8]) {
    const catalog = ModelCatalog.load(join(REPO_ROOT, 'models'), { maxBatchSize, maxBatchDelayMs: 2 });
    const model = catalog.get(MODEL);
    const runtime = await InferenceRuntime.start(catalog, { threads: 1, intraOpThreads });
    const executor = new ModelExecutor(catalog, runtime);
    // The worker's own decode → announce → batch path, minus Redis and the queue.
    const pipeline = async (i: number) => (await inferImage(executor, model, async () => IMAGES[i % IMAGES.length].bytes, { maxPixels: 50_000_000, heic: true })).run;
    for (let i = 0; i < 10; i++) await pipeline(i);
    if (maxBatchSize === 1) {
      const sequential = await runConcurrently(N.latency1, 1, pipeline);
      results.p50Batch1Ms = percentile(sequential.latencies, 50);
    }
    const loaded = await runConcurrently(N.throughput, 32, pipeline);
    results[`throughputBatch${maxBatchSize}`] = (N.throughput / loaded.wallMs) * 1000;
    // The model step alone: pre-decoded tensors, so decoding does not hide the batching effect.
    const tensors = await Promise.all(IMAGES.map((image) => prepareModelInput(image.bytes, model.preprocess, { maxPixels: 50_000_000, heic: true })));
    const modelOnly = await runConcurrently(N.throughput, 32, (i) => executor.run(MODEL, tensors[i % tensors.length].tensor));
    results[`modelStepBatch${maxBatchSize}`] = (N.throughput / modelOnly.wallMs) * 1000;
    await runtime.close();
  }
  return {
    throughput: Math.max(results.throughputBatch1, results.throughputBatch8),
    bestBatch: results.throughputBatch8 >= results.throughputBatch1 ? 8 : 1,
    throughputBatch1: round(results.throughputBatch1),
    throughputBatch8: round(results.throughputBatch8),
    p50Batch1Ms: round(results.p50Batch1Ms, 2),
    modelStepBatch1: round(results.modelStepBatch1),
    modelStepBatch8: round(results.modelStepBatch8),
  };
}

/** `amount` classify requests over HTTP with `connections` concurrent clients; every latency is kept for exact percentiles. */
async function serviceRun(url: string, connections: number, amount: number) {
  let failures = 0;
  const run = await runConcurrently(amount, connections, async (i) => {
    const image = IMAGES[i % IMAGES.length];
    const response = await fetch(`${url}/v1/classify?model=${MODEL}`, { method: 'POST', headers: { 'content-type': image.type }, body: image.bytes });
    await response.arrayBuffer();
    if (response.status !== 200) failures++;
  });
  if (failures > 0) throw new Error(`${failures} of ${amount} service requests failed`);
  return {
    throughput: round((amount / run.wallMs) * 1000),
    p50: round(percentile(run.latencies, 50), 1),
    p95: round(percentile(run.latencies, 95), 1),
    p99: round(percentile(run.latencies, 99), 1),
  };
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

/** CPU time the redis-server process has used (user + system, ms), from INFO cpu. */
async function redisCpuMs(redis: TestRedis): Promise<number> {
  const client = redis.client();
  try {
    const info = await client.info('cpu');
    const seconds = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? 0);
    return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1000;
  } finally {
    client.disconnect();
  }
}

async function service(redis: TestRedis, env: Record<string, string>, prefix: string, measureLatency: boolean) {
  const fullEnv = { REDIS_URL: redis.url, QUEUE_PREFIX: prefix, LOG_LEVEL: 'debug', ORT_INTRA_OP_THREADS: String(intraOpThreads), ...env };
  const worker = await AppProcess.start('worker', fullEnv);
  const api = await AppProcess.start('api', { ...fullEnv, LOG_LEVEL: 'info' });
  try {
    await serviceRun(api.url, 4, 30);
    const out: Record<string, unknown> = {};
    if (measureLatency) {
      const before = await redisCommandCount(redis);
      const single = await serviceRun(api.url, 1, N.latency1);
      out.redisCommandsPerRequest = round(((await redisCommandCount(redis)) - before) / N.latency1, 1);
      out.oneClient = single;
    }
    // Redis' own CPU per request at load (one node: the queue's whole slot lives on one primary on a Cluster too),
    // and so how many requests per second one Redis core carries before Redis, not the workers, is the limit.
    const cpuBefore = await redisCpuMs(redis);
    out.clients32 = await serviceRun(api.url, 32, N.throughput);
    const cpuPerRequest = ((await redisCpuMs(redis)) - cpuBefore) / N.throughput;
    out.redisCpuMsPerRequest = round(cpuPerRequest, 3);
    out.requestsPerRedisCoreSecond = Math.round(1000 / cpuPerRequest);
    const batchSizes = worker.logsWith('job.completed').map((line) => Number(line.batchSize ?? 1));
    out.meanBatchSize = round(batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, batchSizes.length), 2);
    const delays = worker.logsWith('worker.heartbeat').map((line) => Number(line.eventLoopDelayMaxMs ?? 0));
    out.workerEventLoopDelayMaxMs = delays.length ? Math.max(...delays) : null;
    return out;
  } finally {
    await Promise.all([api.stop(), worker.stop()]);
  }
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
  if (mode && !['classify', 'faces', 'faces-quality'].includes(mode)) throw new Error(`unknown bench "${mode}" (available: classify, faces, faces-quality)`);
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
    console.error('bench: in-process…');
    const inprocess = await inProcess();
    console.error('bench: service (default batching)…');
    const svc = (await service(redis, {}, 'bench', true)) as any;
    console.error('bench: service with MAX_BATCH_SIZE=1…');
    const noBatch = (await service(redis, { MAX_BATCH_SIZE: '1' }, 'bench1', false)) as any;
    console.error('bench: seed protocol…');
    const seed = await seedProtocol(redis);

    const ratios = {
      serviceOverInprocessThroughput: round(svc.clients32.throughput / inprocess.throughput, 3),
      addedP50LatencyMs: round(svc.oneClient.p50 - inprocess.p50Batch1Ms, 2),
      batchingGainService: round(svc.clients32.throughput / noBatch.clients32.throughput, 3),
      batchingGainModelStep: round(inprocess.modelStepBatch8 / inprocess.modelStepBatch1, 3),
      p50VsSeedProtocol: round(seed.p50OneClientMs / svc.oneClient.p50, 1),
    };
    const results = {
      when: new Date().toISOString(),
      machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      model: MODEL,
      images: IMAGES.map((image) => image.name),
      settings: { inferenceThreads: 1, ortIntraOpThreads: intraOpThreads },
      inprocess,
      service: svc,
      serviceNoBatching: noBatch,
      seedProtocol: seed,
      ratios,
      targets: { serviceOverInprocessThroughput: '≥ 0.85', addedP50LatencyMs: '≤ 3', batchingGainModelStep: '≥ 1.3' },
    };
    const rows: [string, string | number][] = [
      ['inprocess throughput (img/s, best batch ' + inprocess.bestBatch + ')', round(inprocess.throughput)],
      ['inprocess p50 latency batch 1 (ms)', inprocess.p50Batch1Ms],
      ['inprocess model step batch 1 / 8 (img/s)', `${inprocess.modelStepBatch1} / ${inprocess.modelStepBatch8}`],
      ['service throughput 32 clients (req/s)', svc.clients32.throughput],
      ['service p50/p95/p99 1 client (ms)', `${svc.oneClient.p50} / ${svc.oneClient.p95} / ${svc.oneClient.p99}`],
      ['service p50/p95/p99 32 clients (ms)', `${svc.clients32.p50} / ${svc.clients32.p95} / ${svc.clients32.p99}`],
      ['service mean batch size at 32 clients', svc.meanBatchSize],
      ['service Redis commands per request (incl. inside Lua)', svc.redisCommandsPerRequest],
      ['service Redis CPU per request at 32 clients (ms)', svc.redisCpuMsPerRequest],
      ['requests/s one Redis core carries at that cost', svc.requestsPerRedisCoreSecond],
      ['worker event-loop delay max (ms)', svc.workerEventLoopDelayMaxMs ?? 'n/a'],
      ['service throughput, MAX_BATCH_SIZE=1 (req/s)', noBatch.clients32.throughput],
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
