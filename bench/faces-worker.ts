/**
 * The face-index half of a worker, alone in its own process, for `npm run bench -- faces`: it loads one
 * tenant's faces from Redis (a snapshot file + the log after it, or the whole log), reports how long that took
 * and how much memory it holds, answers the bench's queries through FaceIndex.match (the same search a job
 * runs: exact tail + index candidates checked exactly from the log), and can save a snapshot.
 *
 * node dist/bench/faces-worker.js <queries.f32> <out.json> [--save-snapshot [--settle-before-save]] [--settle-all]
 * Environment: REDIS_URL, STORAGE_DIR, FACE_* (as a worker), BENCH_TENANT, BENCH_WIDTHS (search widths to
 * measure besides FACE_INDEX_SEARCH_WIDTH, comma list).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisConnection } from '@app/redis/redis-connection';
import pino from 'pino';
import { parseEnv } from '@app/config/env.schema';
import { asTenantId, RedisKeys } from '@app/contracts';
import { FaceSnapshots } from '@app/storage/face-snapshots';
import { FaceStore } from '@app/storage/face-store';
import { FaceIndex, faceIndexOptions } from '../apps/worker/src/faces/face-index';
import { residentMemory } from '../apps/worker/src/faces/process-memory';

async function main(): Promise<void> {
  const [queriesPath, outPath, ...flags] = process.argv.slice(2);
  const env = parseEnv(process.env);
  const tenant = asTenantId(process.env.BENCH_TENANT ?? 'bench');
  const redis = RedisConnection.fromEnv(env).client({ maxRetriesPerRequest: 1 });
  const keys = new RedisKeys(env.QUEUE_PREFIX);
  const logger = pino({ level: 'warn' }, pino.destination(2));
  global.gc?.();
  const memBefore = residentMemory();
  const options = faceIndexOptions(env);
  const index = new FaceIndex(new FaceStore(redis, keys), new FaceSnapshots(env.STORAGE_DIR, redis, keys), options, logger);
  const loadStarted = performance.now();
  await index.onModuleInit();
  await index.loaded();
  const loadMs = performance.now() - loadStarted;
  // performance.now() counts from this process's start: Node's own start-up and module loading included.
  const readyMs = performance.now();
  const afterLoad = index.describe(tenant);

  // The bench measures a settled index with the recent faces in the tail: wait until the loop has settled
  // what is due (with FACE_TAIL_SETTLE_MS 0 that is everything loaded; later log entries stay in the tail).
  if (flags.includes('--settle-all')) while ((index.describe(tenant)?.tail ?? 0) > 0) await sleep(50);
  global.gc?.();
  const memLoaded = residentMemory();
  // What the private part is made of, as V8 sees it (the rest is native: usearch's lookups, malloc arenas).
  const { heapUsed, external, arrayBuffers } = process.memoryUsage();
  const v8AtReady = { heapUsed, external, arrayBuffers };

  const raw = readFileSync(queriesPath);
  const queries = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const count = queries.length / 128;
  const results: string[][] = [];
  const times: number[] = [];
  const checked: number[] = [];
  // A worker that has served for a while has its search code compiled: warm up on the first queries, unmeasured.
  for (let i = 0; i < Math.min(20, count); i++) await index.match(tenant, queries.slice(i * 128, (i + 1) * 128), env.FACE_MATCH_THRESHOLD);
  // CPU time of this process over the queries (all its threads): on a shared machine it moves less than wall time.
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const query = queries.slice(i * 128, (i + 1) * 128);
    const t0 = performance.now();
    const found = await index.match(tenant, query, env.FACE_MATCH_THRESHOLD);
    times.push(performance.now() - t0);
    results.push(found.matches.map((match) => match.faceId));
    checked.push(found.checked);
  }
  const cpu = process.cpuUsage(cpuBefore);
  const cpuMsPerQuery = (cpu.user + cpu.system) / 1000 / count;
  // What a serving worker holds: every page its searches touched is mapped now (the queries above).
  global.gc?.();
  const memServing = residentMemory();
  // The same queries at other search widths (FACE_INDEX_SEARCH_WIDTH), on the same loaded index: after the
  // memory reading, which is of a worker that answered the queries once, whichever worker runs the widths.
  const byWidth: Record<string, { times: number[]; results: string[][] }> = {};
  const defaultWidth = options.searchWidth;
  for (const width of (process.env.BENCH_WIDTHS ?? '').split(',').filter(Boolean).map(Number)) {
    options.searchWidth = width;
    const run = { times: [] as number[], results: [] as string[][] };
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      const found = await index.match(tenant, queries.slice(i * 128, (i + 1) * 128), env.FACE_MATCH_THRESHOLD);
      run.times.push(performance.now() - t0);
      run.results.push(found.matches.map((match) => match.faceId));
    }
    byWidth[width] = run;
  }
  options.searchWidth = defaultWidth;
  const beforeSave = index.describe(tenant);
  let snapshotMs: number | undefined;
  let copyPrivateBytes: number | undefined;
  if (flags.includes('--save-snapshot')) {
    // With a viewed base, the replayed faces first settle into the delta (FACE_TAIL_SETTLE_MS after they were
    // seen), so the snapshot written is a copy of the base plus that delta read back from the log.
    if (flags.includes('--settle-before-save')) while ((index.describe(tenant)?.tail ?? 0) > 0) await sleep(100);
    const t0 = performance.now();
    if (!(await index.saveSnapshot(tenant))) throw new Error('no snapshot saved');
    snapshotMs = performance.now() - t0;
    copyPrivateBytes = index.lastCopyPrivateBytes;
  }
  await index.onModuleDestroy();
  const afterSave = index.describe(tenant);
  writeFileSync(outPath, JSON.stringify({ afterSave, cpuMsPerQuery, loadMs, readyMs, memBefore, memLoaded, memServing, afterLoad, beforeSave, snapshotMs, copyPrivateBytes, v8AtReady, times, checked, results, byWidth }));
  redis.disconnect();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
