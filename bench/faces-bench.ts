/**
 * npm run bench -- faces [--faces N] [--queries Q] [--crossover] [--keep DIR]
 *
 * One tenant of N synthetic faces (clustered identities, bench/face-identities.ts) written into a Redis log of
 * the bench's own, exactly as workers write it; then, each in a fresh process (bench/faces-worker.ts):
 *   1. a cold worker builds the tenant's index from the log (buildMs), settles it, answers Q queries and saves
 *      a snapshot file;
 *   2. more faces are added to the log, and a second worker starts from the snapshot (viewed: memory-mapped)
 *      + the log after it (workerReadyMs, from process start), answers the same queries, reports its private
 *      and file-backed resident memory (bytesPerFace counts both, in full), then lets the replayed faces settle
 *      and writes the next snapshot from its viewed base (time, private memory of the copy).
 * Each answer is compared with the exact scan over every stored face (today's FaceMatrix, in this process):
 * recall of its matches above the threshold, and false matches (faces returned that the exact scan does not
 * return). The real fixture faces are embedded by the real pipeline first, and their similarity spread is
 * printed beside the synthetic one. Writes bench/results/faces-latest.json.
 * --keep DIR (an empty or new folder) keeps the work: the snapshots and queries in DIR, the log in an append-only
 * Redis in DIR/redis (left stopped), so a later experiment can start one worker on 10^6 faces without the
 * hour-long cold build (`redis-server --port P --appendonly yes --dir DIR/redis`, then bench/faces-worker.js).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { RedisKeys } from '@app/contracts';
import { InferenceRuntime, ModelCatalog, ModelExecutor } from '@app/models';
import { FacePipeline } from '../apps/worker/src/faces/face-pipeline';
import { FaceMatrix } from '../apps/worker/src/faces/face-matrix';
import { ApproximateFaceIndex } from '../apps/worker/src/faces/approximate-face-index';
import { RERANK_MARGIN } from '../apps/worker/src/faces/tenant-faces';
import { resolveFaceIndexStorage } from '../apps/worker/src/faces/face-index';
import { parseEnv } from '@app/config/env.schema';
import type { ResidentMemory } from '../apps/worker/src/faces/process-memory';
import { jemallocEnv, REPO_ROOT } from '../test/support/app-process';
import { TestRedis } from '../test/support/test-redis';
import { CliFlags } from './cli-flags';
import { clusteredFaces, DIMENSIONS, FaceSet, newView, similaritySpread, stranger, summary, Xorshift } from './face-identities';
import { percentile, round } from './stats';

const TENANT = 'bench';
/** FACE_INDEX_SEARCH_WIDTH's default; the cold worker also answers at the other widths (recall against time). */
const DEFAULT_WIDTH = 256;
const WIDTHS = [64, 128, 256, 512, 1024];
const THRESHOLD = 0.45;
const VIEWS = 10;

export async function benchFaces(argv: string[]): Promise<Record<string, unknown>> {
  const flags = new CliFlags(argv, ['faces', 'queries', 'crossover', 'keep']);
  const keep = flags.get('keep');
  const stored = Math.round(flags.positive('faces', 100_000));
  const queryCount = Math.round(flags.positive('queries', 300));
  const wall = performance.now();
  const log = (message: string) => console.error(`bench faces: ${message} (${Math.round((performance.now() - wall) / 1000)} s)`);

  log('embedding the fixture faces with the real pipeline');
  const fixtures = await fixtureSpread();
  log(`generating ${stored} faces of ${Math.ceil(stored / VIEWS)} identities`);
  const set = clusteredFaces(stored, VIEWS);
  const synthetic = similaritySpread(set, VIEWS);
  // Faces that arrive after the snapshot (replayed by the second worker) and just before the queries (the tail).
  const replayed = Math.min(10_000, Math.max(100, Math.round(stored / 20)));
  const random = new Xorshift(2024);
  const identities = Math.ceil(stored / VIEWS);
  const later = Array.from({ length: replayed }, () => newView(set, Math.floor(random.next() * identities), random));
  const queries = new Float32Array(queryCount * DIMENSIONS);
  for (let i = 0; i < queryCount; i++) queries.set(i % 6 === 5 ? stranger(random) : newView(set, Math.floor(random.next() * identities), random), i * DIMENSIONS);

  const work = keep ?? mkdtempSync(join(tmpdir(), 'iiq-bench-faces-'));
  if (keep) mkdirSync(join(keep, 'redis'), { recursive: true });
  const redis = await TestRedis.start(undefined, keep ? { appendOnlyDir: join(keep, 'redis') } : {});
  const client = redis.client();
  try {
    log('writing the log into Redis');
    const keys = new RedisKeys('iiq');
    await writeLog(client, keys, 1, set.vectors);
    await client.sadd(keys.faceTenants(), TENANT);
    const queriesPath = join(work, 'queries.f32');
    writeFileSync(queriesPath, Buffer.from(queries.buffer));
    // Below FACE_INDEX_MIN_FACES a worker keeps the exact scan and never settles a face, so the cold worker's
    // --settle-all waited forever for any --faces under 20,000 (red team, stop 32): the bench lowers it to half
    // the tenant, says so, and measures the index path a larger tenant would take.
    const settings = parseEnv(process.env);
    const minFaces = settings.FACE_INDEX_MIN_FACES;
    const indexMinFaces = Math.min(minFaces, Math.max(1, Math.floor(stored / 2)));
    if (indexMinFaces < minFaces) log(`${stored} faces is below FACE_INDEX_MIN_FACES (${minFaces}), where a worker keeps the exact scan: the bench's workers use ${indexMinFaces} to measure the index`);
    const env = {
      REDIS_URL: redis.url,
      STORAGE_DIR: join(work, 'images'),
      FACE_MATCH_THRESHOLD: String(THRESHOLD),
      BENCH_TENANT: TENANT,
      FACE_INDEX_STORAGE: process.env.FACE_INDEX_STORAGE ?? 'auto',
      FACE_INDEX_MIN_FACES: String(indexMinFaces),
    };
    // pq (FAISS, where built): the cold worker answers from its in-memory int8 index, and the snapshot it saves
    // is the PQ one, so the headline figures and the widths are the warm worker's (PQ base + exact tail).
    const storage = resolveFaceIndexStorage(settings.FACE_INDEX_STORAGE);
    const widthsOn = storage === 'pq' ? 'warm' : 'cold';

    log('cold worker: building the index from the log');
    const cold = await worker(queriesPath, join(work, 'cold.json'), { ...env, FACE_TAIL_SETTLE_MS: '0', ...(widthsOn === 'cold' ? { BENCH_WIDTHS: WIDTHS.join(',') } : {}) }, ['--settle-all', '--save-snapshot']);
    const snapshot = readdirSync(join(work, 'images', TENANT, '.face-index')).find((name) => name.endsWith('.usearch') || name.endsWith('.faiss'))!;
    const snapshotBytes = statSync(join(work, 'images', TENANT, '.face-index', snapshot)).size;

    log(`adding ${replayed} faces after the snapshot; warm worker: snapshot + log replay`);
    await writeLog(client, keys, stored + 1, flatten(later));
    // It also writes the next snapshot at the end (a copy of its viewed base + the replayed faces): the
    // transient memory of that copy is measured there, after everything else.
    const warm = await worker(queriesPath, join(work, 'warm.json'), { ...env, ...(widthsOn === 'warm' ? { BENCH_WIDTHS: WIDTHS.join(',') } : {}) }, ['--save-snapshot', '--settle-before-save']);

    log('exact scan of every query (ground truth)');
    // The scalar scan: today's FaceMatrix as the issue measured it (75 ms at 10⁶), the reference of exactScanOverMatch.
    const matrix = new FaceMatrix(DIMENSIONS, stored + replayed, { scalar: true });
    for (let row = 0; row < stored; row++) matrix.add(row + 1, `f${row + 1}`, `i${row + 1}`, set.vectors.subarray(row * DIMENSIONS, (row + 1) * DIMENSIONS));
    later.forEach((vector, i) => matrix.add(stored + i + 1, `f${stored + i + 1}`, `i${stored + i + 1}`, vector));
    const exactTimes: number[] = [];
    for (let i = 0; i < Math.min(20, queryCount); i++) matrix.search(queries.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS), Infinity, '', THRESHOLD);
    const exactAt = (withLater: boolean) => (i: number) => {
      const t0 = performance.now();
      const found = matrix.search(queries.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS), withLater ? Infinity : stored + 1, '', THRESHOLD).map((m) => m.faceId);
      exactTimes.push(performance.now() - t0);
      return new Set(found);
    };
    const truthCold = Array.from({ length: queryCount }, (_, i) => exactAt(false)(i));
    // The same exact scan with the SIMD pre-filter the tail uses (FaceMatrix's default), on the first 20 queries.
    const simdMatrix = new FaceMatrix(DIMENSIONS, stored + replayed);
    for (let row = 0; row < stored; row++) simdMatrix.add(row + 1, `f${row + 1}`, `i${row + 1}`, set.vectors.subarray(row * DIMENSIONS, (row + 1) * DIMENSIONS));
    const simdTimes: number[] = [];
    for (let i = 0; i < Math.min(20, queryCount); i++) {
      const t0 = performance.now();
      const found = simdMatrix.search(queries.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS), Infinity, '', THRESHOLD);
      simdTimes.push(performance.now() - t0);
      if (found.length !== truthCold[i].size) throw new Error(`the SIMD scan found ${found.length} faces for query ${i}, the scalar scan ${truthCold[i].size}`);
    }
    const truthWarm = Array.from({ length: queryCount }, (_, i) => exactAt(true)(i));
    const coldScore = score(cold.results, truthCold);
    const byWidth = Object.fromEntries(
      Object.entries((widthsOn === 'warm' ? warm : cold).byWidth ?? {}).map(([width, run]) => {
        const scored = score(run.results, widthsOn === 'warm' ? truthWarm : truthCold);
        return [width, { searchMsP50: round(percentile(run.times, 50), 3), searchMsP99: round(percentile(run.times, 99), 3), recall: scored.recall, falseMatches: scored.falseMatches }];
      }),
    );
    const warmScore = score(warm.results, truthWarm);

    const served = storage === 'pq' ? { run: warm, score: warmScore } : { run: cold, score: coldScore };
    const result: Record<string, unknown> = {
      storedFaces: stored,
      queries: queryCount,
      threshold: THRESHOLD,
      storage,
      // The worker processes' allocator: the image's (jemalloc) where this machine has it, else glibc's malloc.
      allocator: workerAllocator().LD_PRELOAD ? 'jemalloc' : 'glibc',
      // int8: the cold worker's in-memory index; pq: the warm worker's loaded PQ snapshot (+ the replayed faces' exact tail).
      searchMsP50: round(percentile(served.run.times, 50), 3),
      searchMsP99: round(percentile(served.run.times, 99), 3),
      // The same worker's CPU time a query (mean, all its threads; Redis's own time not included).
      searchCpuMs: round(served.run.cpuMsPerQuery, 3),
      recall: served.score.recall,
      falseMatches: served.score.falseMatches,
      exactMatches: served.score.expected,
      coldWorkerInt8: { searchMsP50: round(percentile(cold.times, 50), 3), searchMsP99: round(percentile(cold.times, 99), 3), recall: coldScore.recall, falseMatches: coldScore.falseMatches },
      // A worker started from the snapshot, after answering the queries: private (RssAnon) plus file-backed
      // (RssFile: the memory-mapped snapshot pages its searches touched, shared by the host's workers in the
      // page cache but counted in full) resident bytes, minus the same before it loaded the tenant, per face.
      bytesPerFace: perFace(warm.memServing, warm.memBefore, stored).total,
      memory: {
        serving: perFace(warm.memServing, warm.memBefore, stored),
        atReady: perFace(warm.memLoaded, warm.memBefore, stored),
        // Of the private part at ready: V8's heap and typed arrays (the replayed tail's float32 rows among them), in MB.
        v8AtReadyMB: Object.fromEntries(Object.entries(warm.v8AtReady).map(([name, bytes]) => [name, round(bytes / 2 ** 20, 1)])),
        afterColdBuild: perFace(cold.memLoaded, cold.memBefore, stored),
        snapshotCopyPrivateBytesPerFace: warm.copyPrivateBytes === undefined ? null : Math.round(warm.copyPrivateBytes / stored),
        snapshotFromBaseMs: Math.round(warm.snapshotMs ?? NaN),
        snapshotFromBase: { before: warm.beforeSave, after: warm.afterSave },
      },
      bytesPerFaceAfterColdBuild: perFace(cold.memLoaded, cold.memBefore, stored).total,
      snapshotBytesPerFace: Math.round(snapshotBytes / stored),
      buildMs: Math.round(cold.loadMs),
      snapshotSaveMs: Math.round(cold.snapshotMs ?? NaN),
      workerReadyMs: Math.round(warm.readyMs),
      workerReady: { indexLoadMs: Math.round(warm.loadMs), replayedFaces: replayed, state: warm.afterLoad },
      afterRestart: { searchMsP50: round(percentile(warm.times, 50), 3), searchMsP99: round(percentile(warm.times, 99), 3), recall: warmScore.recall, falseMatches: warmScore.falseMatches, exactMatches: warmScore.expected, tailFaces: warm.beforeSave?.tail },
      candidatesCheckedP50: percentile(served.run.checked, 50),
      searchWidth: DEFAULT_WIDTH,
      byWidth,
      exactScanMsP50: round(percentile(exactTimes, 50), 2),
      exactScanMsP99: round(percentile(exactTimes, 99), 2),
      exactScanSimdMsP50: round(percentile(simdTimes, 50), 2),
      // The exact scan's p50 over the match's, both from this run: what a shared, noisy machine moves least. The
      // issue's targets were set where the exact scan of 10⁶ faces took 75 ms: p50 ≤ 5 ms is 15 times faster.
      exactScanOverMatch: round(percentile(exactTimes, 50) / percentile(served.run.times, 50), 1),
      similaritySpread: { fixtures, synthetic },
      wallSeconds: 0,
    };
    if (flags.get('crossover')) {
      log('exact scan against the index alone at small sizes (FACE_INDEX_MIN_FACES)');
      result.crossover = crossover(set, queries);
    }
    result.wallSeconds = Math.round((performance.now() - wall) / 1000);
    return result;
  } finally {
    client.disconnect();
    await redis.stop();
    if (!keep) rmSync(work, { recursive: true, force: true });
  }
}

/** XADDs the faces as INSERT_FACES writes them (seq-1 ids, base64 float32), and sets the tenant's counter. */
async function writeLog(client: Redis, keys: RedisKeys, firstSeq: number, vectors: Float32Array): Promise<void> {
  const k = keys.tenant(TENANT as never);
  const count = vectors.length / DIMENSIONS;
  for (let start = 0; start < count; start += 2000) {
    const pipeline = client.pipeline();
    for (let row = start; row < Math.min(count, start + 2000); row++) {
      const seq = firstSeq + row;
      const embedding = Buffer.from(vectors.buffer, vectors.byteOffset + row * DIMENSIONS * 4, DIMENSIONS * 4).toString('base64');
      pipeline.xadd(k.faceLog(), `${seq}-1`, 'op', 'add', 'faceId', `f${seq}`, 'imageHash', `i${seq}`, 'embedding', embedding);
    }
    await pipeline.exec();
  }
  await client.set(k.faceSeq(), String(firstSeq + count - 1));
}

interface WorkerReport {
  loadMs: number;
  /** The worker process's CPU time (all threads) over the measured queries, per query. */
  cpuMsPerQuery: number;
  readyMs: number;
  memBefore: ResidentMemory;
  memLoaded: ResidentMemory;
  memServing: ResidentMemory;
  copyPrivateBytes?: number;
  v8AtReady: Record<string, number>;
  afterSave?: { tail: number; indexed: number };
  afterLoad?: { tail: number; indexed: number };
  beforeSave?: { tail: number; indexed: number };
  snapshotMs?: number;
  times: number[];
  checked: number[];
  results: string[][];
  byWidth?: Record<string, { times: number[]; results: string[][] }>;
}

async function worker(queriesPath: string, outPath: string, env: Record<string, string>, flags: string[]): Promise<WorkerReport> {
  await promisify(execFile)(process.execPath, ['--expose-gc', join(REPO_ROOT, 'dist', 'bench', 'faces-worker.js'), queriesPath, outPath, ...flags], {
    // As the image runs a worker (Dockerfile): V8's young generation capped, and jemalloc where installed.
    env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: '--max-semi-space-size=2', ...workerAllocator(), ...env },
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(readFileSync(outPath, 'utf8')) as WorkerReport;
}

/** The image's allocator where installed; `LD_PRELOAD= npm run bench -- faces` measures glibc's malloc instead. */
function workerAllocator(): Record<string, string> {
  return process.env.LD_PRELOAD === undefined ? jemallocEnv() : { LD_PRELOAD: process.env.LD_PRELOAD };
}

/** Resident bytes per face gained between two readings: private, file-backed, and both together. */
function perFace(after: ResidentMemory, before: ResidentMemory, faces: number): { private: number; fileBacked: number; total: number } {
  const privateBytes = after.private - before.private;
  const fileBacked = after.fileBacked - before.fileBacked;
  return { private: Math.round(privateBytes / faces), fileBacked: Math.round(fileBacked / faces), total: Math.round((privateBytes + fileBacked) / faces) };
}

function score(results: string[][], truth: Set<string>[]): { recall: number; falseMatches: number; expected: number } {
  let expected = 0;
  let found = 0;
  let falseMatches = 0;
  results.forEach((ids, i) => {
    expected += truth[i].size;
    for (const id of ids) {
      if (truth[i].has(id)) found++;
      else falseMatches++;
    }
  });
  return { recall: expected === 0 ? 1 : round(found / expected, 4), falseMatches, expected };
}

function flatten(vectors: Float32Array[]): Float32Array {
  const out = new Float32Array(vectors.length * DIMENSIONS);
  vectors.forEach((vector, i) => out.set(vector, i * DIMENSIONS));
  return out;
}

/**
 * The fixture photos' faces through the real pipeline (YuNet → align → MobileFaceNet): similarity of the
 * same person (Obama ×3, Biden ×3, by file and, in the two-person photo, by side) and of different people.
 */
async function fixtureSpread() {
  const catalog = ModelCatalog.load(join(REPO_ROOT, 'models'), {});
  const runtime = await InferenceRuntime.start(catalog, { threads: 1, intraOpThreads: 1 });
  try {
    const pipeline = new FacePipeline(catalog, new ModelExecutor(catalog, runtime), { detector: 'yunet', embedder: 'mobilefacenet', minFaceSize: 20, limits: { maxPixels: 50_000_000, heic: true } });
    const labelled: { person: string; embedding: Float32Array }[] = [];
    for (const [file, people] of Object.entries({
      'face_obama_1.jpg': ['obama'],
      'face_obama_2.jpg': ['obama'],
      'face_biden_1.jpg': ['biden'],
      'face_biden_2.jpg': ['biden'],
      'faces_obama_biden.jpg': ['obama', 'biden'],
      'face_crop_howard_1.png': ['howard'],
      'face_crop_sheldon_1.png': ['sheldon'],
    })) {
      const found = await pipeline.run(readFileSync(join(REPO_ROOT, 'test', 'fixtures', file)));
      const faces = [...found.faces].sort((a, b) => a.box.x - b.box.x);
      faces.forEach((face, i) => labelled.push({ person: people[i] ?? `${file}#${i}`, embedding: face.embedding }));
    }
    const same: number[] = [];
    const different: number[] = [];
    for (let i = 0; i < labelled.length; i++) {
      for (let j = i + 1; j < labelled.length; j++) {
        let s = 0;
        for (let k = 0; k < DIMENSIONS; k++) s += labelled[i].embedding[k] * labelled[j].embedding[k];
        (labelled[i].person === labelled[j].person ? same : different).push(s);
      }
    }
    return { same: summary(same, THRESHOLD), different: summary(different, THRESHOLD) };
  } finally {
    await runtime.close();
  }
}

/** p50 of the exact scan and of the index search alone over the first n faces, for a few n (no Redis). */
function crossover(set: FaceSet, queries: Float32Array) {
  const rows: Record<string, unknown>[] = [];
  const count = Math.min(200, queries.length / DIMENSIONS);
  for (const n of [2_000, 5_000, 10_000, 20_000, 50_000]) {
    if (n > set.identities.length) break;
    const matrix = new FaceMatrix(DIMENSIONS, n);
    for (let row = 0; row < n; row++) matrix.add(row + 1, `f${row}`, `i${row}`, set.vectors.subarray(row * DIMENSIONS, (row + 1) * DIMENSIONS));
    const index = ApproximateFaceIndex.create(DIMENSIONS);
    index.add(Float64Array.from({ length: n }, (_, i) => i + 1), set.vectors.subarray(0, n * DIMENSIONS));
    const exact: number[] = [];
    const approximate: number[] = [];
    for (let i = 0; i < count; i++) {
      const query = queries.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS);
      let t0 = performance.now();
      matrix.search(query, Infinity, '', THRESHOLD);
      exact.push(performance.now() - t0);
      t0 = performance.now();
      index.searchAbove(query, THRESHOLD - RERANK_MARGIN, Infinity, DEFAULT_WIDTH);
      approximate.push(performance.now() - t0);
    }
    rows.push({ faces: n, exactMsP50: round(percentile(exact, 50), 3), indexMsP50: round(percentile(approximate, 50), 3) });
  }
  return rows;
}
