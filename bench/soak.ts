/**
 * npm run soak -- [--minutes 20] [--rate 6] [--rss-growth-mb 96] [--sample-seconds 5]
 *
 * Starts its own Redis (free loopback port), API and worker, then drives mixed traffic at a fixed rate:
 * classification with both models, analyses of known images (cache hits) and of new ones (real work),
 * face matching of a known face and of new uploads, and result reads. Samples the RSS of API and worker
 * every few seconds. Fails (exit 1) on any error answer, any error logged by either process, or when a
 * process's RSS after warm-up grows more than --rss-growth-mb above its warm-up peak.
 * Only 127.0.0.1 is contacted; the run stops by itself after --minutes.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess, REPO_ROOT } from '../test/support/app-process';
import { fixture } from '../test/support/fixtures';
import { HttpResult, multipart, request } from '../test/support/http';
import { rssBytes } from '../test/support/load';
import { TestRedis } from '../test/support/test-redis';
import { CliFlags } from './cli-flags';
import { percentile, round } from './stats';
import { setTimeout as sleep } from 'node:timers/promises';

interface Options {
  minutes: number;
  rate: number;
  rssGrowthMb: number;
  sampleSeconds: number;
}

function parseArgs(argv: string[]): Options {
  const flags = new CliFlags(argv, ['minutes', 'rate', 'rss-growth-mb', 'sample-seconds']);
  const options: Options = {
    minutes: flags.positive('minutes', 5),
    rate: flags.positive('rate', 6),
    rssGrowthMb: flags.positive('rss-growth-mb', 96),
    sampleSeconds: flags.positive('sample-seconds', 5),
  };
  if (options.minutes > 24 * 60) throw new Error('--minutes is capped at 1440');
  if (options.rate > 200) throw new Error('--rate is capped at 200 requests/s');
  return options;
}

const MAX_IN_FLIGHT = 64;
const MB = 1024 * 1024;

/** Any JPEG with bytes after its end marker decodes the same but has a new content hash: new work, same answer. */
function freshVariant(bytes: Buffer): Buffer {
  return Buffer.concat([bytes, randomBytes(16)]);
}

/** What was wrong with an answer, for the failure list: its status and the start of its body. */
function unexpected(answer: HttpResult): string {
  return `${answer.status} ${JSON.stringify(answer.body).slice(0, 200)}`;
}

interface Step {
  kind: string;
  send: (baseUrl: string) => Promise<string | undefined>; // undefined = right answer, else what was wrong
}

function trafficMix(): { steps: Step[]; analysed: string[] } {
  const castle = fixture('castle_image.jpg');
  const kitten = fixture('cat_kitten_224.png');
  const beagle = fixture('dog_beagle_jemma.png');
  const obama = fixture('face_obama_1.jpg');
  const biden = fixture('face_biden_1.jpg');
  const analysed: string[] = [];

  const classify = (bytes: Buffer, type: string, model: string, label: string): Step => ({
    kind: `classify ${model}`,
    send: async (base) => {
      const answer = await request(`${base}/v1/classify?topk=1&model=${model}`, { method: 'POST', headers: { 'content-type': type }, body: bytes, signal: AbortSignal.timeout(60_000) });
      return answer.status === 200 && answer.body.predictions[0].label === label ? undefined : unexpected(answer);
    },
  });
  const analyse = (kind: string, bytes: () => Buffer, models: string): Step => ({
    kind,
    send: async (base) => {
      const form = multipart({ images: { bytes: bytes(), filename: 'image.jpg' }, models });
      const answer = await request(`${base}/v1/analyses`, { method: 'POST', body: form, signal: AbortSignal.timeout(60_000) });
      if (answer.status !== 202 && answer.status !== 200) return unexpected(answer);
      analysed.push(answer.body.images[0].hash);
      if (analysed.length > 1000) analysed.shift();
      return undefined;
    },
  });
  const faces = (kind: string, bytes: () => Buffer): Step => ({
    kind,
    send: async (base) => {
      const answer = await request(`${base}/v1/faces`, { method: 'POST', body: multipart({ image: { bytes: bytes(), filename: 'face.jpg' } }), signal: AbortSignal.timeout(60_000) });
      return answer.status === 200 && answer.body.faces.length >= 1 ? undefined : unexpected(answer);
    },
  });
  const readResult: Step = {
    kind: 'read analysis',
    send: async (base) => {
      const hash = analysed[Math.floor(Math.random() * analysed.length)];
      if (!hash) return undefined;
      const answer = await request(`${base}/v1/images/${hash}`, { signal: AbortSignal.timeout(60_000) });
      return answer.status === 200 ? undefined : unexpected(answer);
    },
  };
  const steps = [
    classify(castle, 'image/jpeg', 'mobilenet_v2', 'castle'),
    classify(kitten, 'image/png', 'squeezenet1_1', 'tabby'),
    analyse('analysis (repeat: cache hit)', () => castle, 'mobilenet_v2,yolox_nano'),
    classify(beagle, 'image/png', 'mobilenet_v2', 'beagle'),
    faces('faces (repeat)', () => obama),
    analyse('analysis (new image)', () => freshVariant(castle), 'squeezenet1_1,yunet'),
    classify(castle, 'image/jpeg', 'squeezenet1_1', 'castle'),
    readResult,
    faces('faces (new image)', () => freshVariant(biden)),
    classify(kitten, 'image/png', 'mobilenet_v2', 'tabby'),
  ];
  return { steps, analysed };
}

/** Every analysis submitted must end with every model completed; returns what did not. */
async function unfinishedAnalyses(baseUrl: string, hashes: string[]): Promise<string[]> {
  const deadline = Date.now() + 60_000;
  let open = [...new Set(hashes)];
  while (open.length > 0 && Date.now() < deadline) {
    const still: string[] = [];
    for (const hash of open) {
      const answer = await request(`${baseUrl}/v1/images/${hash}`);
      const states = Object.values<{ state: string }>(answer.body?.models ?? {}).map((view) => view.state);
      if (answer.status !== 200 || states.length === 0 || states.some((state) => state !== 'completed')) still.push(hash);
    }
    open = still;
    if (open.length > 0) await sleep(500);
  }
  return open;
}

interface RssSample {
  atSeconds: number;
  apiMb: number;
  workerMb: number;
  inFlight: number;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const durationMs = options.minutes * 60_000;
  const warmupMs = Math.min(120_000, Math.max(15_000, durationMs / 4));
  const storage = mkdtempSync(join(tmpdir(), 'iiq-soak-'));
  const redis = await TestRedis.start();
  const env = { REDIS_URL: redis.url, STORAGE_DIR: storage, LOG_LEVEL: 'warn' };
  const [api, worker] = await Promise.all([AppProcess.start('api', { ...env, LOG_LEVEL: 'info' }), AppProcess.start('worker', { ...env, LOG_LEVEL: 'info' })]);
  // Ctrl-C or a kill ends the processes this run started, not only the run itself.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.log(`soak: ${signal}, stopping`);
      void Promise.all([api.stop(), worker.stop()])
        .then(() => redis.stop())
        .finally(() => process.exit(130));
    });
  }
  console.log(`soak: ${options.minutes} min at ${options.rate} req/s against ${api.url} (warm-up ${warmupMs / 1000} s, RSS growth bound ${options.rssGrowthMb} MB)`);

  const { steps, analysed } = trafficMix();
  const counts = new Map<string, { sent: number; ok: number; latencies: number[] }>();
  const failures: string[] = [];
  const samples: RssSample[] = [];
  let inFlight = 0;
  let sent = 0;
  const started = Date.now();

  const tick = () => {
    const step = steps[sent % steps.length];
    sent++;
    const count = counts.get(step.kind) ?? { sent: 0, ok: 0, latencies: [] };
    counts.set(step.kind, count);
    count.sent++;
    if (inFlight >= MAX_IN_FLIGHT) {
      failures.push(`${step.kind}: not sent, ${MAX_IN_FLIGHT} requests already in flight (the service fell behind the rate)`);
      return;
    }
    inFlight++;
    const t0 = Date.now();
    step
      .send(api.url)
      .then((problem) => (problem ? failures.push(`${step.kind}: ${problem}`) : (count.ok++, count.latencies.push(Date.now() - t0))))
      .catch((error: Error) => failures.push(`${step.kind}: ${error.message}`))
      .finally(() => inFlight--);
  };
  const sample = () => {
    const point = { atSeconds: round((Date.now() - started) / 1000), apiMb: round((rssBytes(api.pid) ?? 0) / MB), workerMb: round((rssBytes(worker.pid) ?? 0) / MB), inFlight };
    samples.push(point);
    console.log(`  t=${point.atSeconds}s api ${point.apiMb} MB, worker ${point.workerMb} MB, in flight ${point.inFlight}, sent ${sent}, failures ${failures.length}`);
  };

  sample();
  const trafficTimer = setInterval(tick, 1000 / options.rate);
  const sampleTimer = setInterval(sample, options.sampleSeconds * 1000);
  await sleep(durationMs);
  clearInterval(trafficTimer);
  const drainDeadline = Date.now() + 60_000;
  while (inFlight > 0 && Date.now() < drainDeadline) await sleep(100);
  clearInterval(sampleTimer);
  sample();
  if (inFlight > 0) failures.push(`${inFlight} requests still unanswered 60 s after the load stopped`);
  for (const hash of await unfinishedAnalyses(api.url, analysed)) failures.push(`analysis of ${hash} did not complete every model`);

  const loggedErrors = [...api.logs, ...worker.logs].filter((line) => Number(line.level) >= 50);
  for (const line of loggedErrors.slice(0, 20)) failures.push(`logged error: ${JSON.stringify(line).slice(0, 300)}`);
  const crashed = [api, worker].filter((app) => app.exited).map((app) => app.kind);
  for (const kind of crashed) failures.push(`${kind} process exited during the soak`);

  const verdicts = (['apiMb', 'workerMb'] as const).map((key) => {
    const warm = samples.filter((s) => s.atSeconds * 1000 <= warmupMs).map((s) => s[key]);
    const after = samples.filter((s) => s.atSeconds * 1000 > warmupMs);
    const warmPeak = Math.max(...warm);
    const peakAfter = Math.max(...after.map((s) => s[key]));
    const slope = slopePerMinute(after.map((s) => [s.atSeconds / 60, s[key]]));
    const grew = peakAfter - warmPeak;
    if (grew > options.rssGrowthMb) failures.push(`${key}: RSS after warm-up peaked ${round(grew)} MB above the warm-up peak (bound ${options.rssGrowthMb} MB)`);
    return { process: key === 'apiMb' ? 'api' : 'worker', warmupPeakMb: warmPeak, peakAfterWarmupMb: peakAfter, growthMb: round(grew), slopeMbPerMinute: round(slope, 2) };
  });

  const byKind = [...counts.entries()].map(([kind, c]) => ({ kind, sent: c.sent, ok: c.ok, p50Ms: percentile(c.latencies, 50), p99Ms: percentile(c.latencies, 99) }));
  const summary = { minutes: options.minutes, rate: options.rate, sent, answeredRight: byKind.reduce((n, k) => n + k.ok, 0), failures: failures.length, loggedErrors: loggedErrors.length, memory: verdicts, byKind };
  console.table(byKind);
  console.table(verdicts);
  for (const failure of failures.slice(0, 30)) console.log(`FAIL ${failure}`);
  mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(REPO_ROOT, 'bench', 'results', `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ summary, samples, failures }, null, 2));
  console.log(JSON.stringify(summary));

  await Promise.all([api.stop(), worker.stop()]);
  await redis.stop();
  rmSync(storage, { recursive: true, force: true });
  console.log(failures.length === 0 ? 'soak: PASS' : `soak: FAIL (${failures.length} problems)`);
  process.exit(failures.length === 0 ? 0 : 1);
}

/** Least-squares slope of (minute, MB) points. */
function slopePerMinute(points: [number, number][]): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
