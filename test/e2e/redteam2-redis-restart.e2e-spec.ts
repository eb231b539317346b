import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import pino from 'pino';
import { RedisKeys, TenantId } from '@app/contracts';
import { FaceSnapshots } from '@app/storage/face-snapshots';
import { FaceStore } from '@app/storage/face-store';
import { CompressedFaceIndex } from '../../apps/worker/src/faces/compressed-face-index';
import { FaceIndex } from '../../apps/worker/src/faces/face-index';
import { clusteredFaces, DIMENSIONS } from '../../bench/face-identities';
import { until } from '../support/load';
import { storeFace } from '../support/stored-face';
import { TestRedis } from '../support/test-redis';

const withBinding = CompressedFaceIndex.available || process.env.CI === 'true' ? describe : describe.skip;

withBinding('Redis restarted during a PQ exact build (red team 2)', () => {
  const keys = new RedisKeys('iiq');
  const dirs: string[] = [];
  let redis: TestRedis | undefined;
  let client: Redis | undefined;
  let index: FaceIndex | undefined;
  afterAll(async () => {
    await index?.onModuleDestroy();
    client?.disconnect();
    await redis?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('Redis stopped while a worker builds a PQ snapshot from exact vectors, then back with its data: the failed attempt gives its lease back once Redis is back, and a snapshot is written within seconds (the lease held off every attempt for an hour)', async () => {
    const aof = mkdtempSync(join(tmpdir(), 'iiq-rt2-aof-'));
    const storageDir = mkdtempSync(join(tmpdir(), 'iiq-rt2-restart-'));
    dirs.push(aof, storageDir);
    redis = await TestRedis.start(undefined, { appendOnlyDir: aof });
    client = redis.client();
    const store = new FaceStore(client, keys);
    const tenant = 'redis-restarts' as TenantId;
    await client.sadd(keys.faceTenants(), tenant);
    const set = clusteredFaces(500, 12, 51);
    for (let row = 0; row < 300; row++) await storeFace(client, store, keys, tenant, `r-${row}`, set.vectors.slice(row * DIMENSIONS, (row + 1) * DIMENSIONS));
    index = new FaceIndex(store, new FaceSnapshots(storageDir, client, keys), { minFaces: 50, settleMs: 0, snapshotEvery: 1_000_000, searchWidth: 256, storage: 'pq', pqMinFaces: 200 }, pino({ level: 'silent' }));
    await index.onModuleInit();
    await index.loaded();
    expect(await index.saveSnapshot(tenant)).toMatch(/\.faiss$/);
    for (let row = 300; row < 500; row++) await storeFace(client, store, keys, tenant, `r-${row}`, set.vectors.slice(row * DIMENSIONS, (row + 1) * DIMENSIONS));
    await index.match(tenant, set.vectors.slice(0, DIMENSIONS), 0.99);

    // The exact build (at least 150 of 300 faces linked on PQ distances: past PQ_REBUILD_SHARE) reads the log; Redis stops
    // (SIGTERM: its append-only file is flushed, the lease with it) as soon as the build has read its page.
    const port = redis.port;
    const readLog = store.readLog.bind(store);
    let stopped = false;
    const spy = jest.spyOn(store, 'readLog').mockImplementation(async (...args) => {
      const read = await readLog(...args);
      if (!stopped && read.entries.length > 100) {
        stopped = true;
        await redis!.kill('SIGTERM');
      }
      return read;
    });
    let failed: unknown;
    try {
      failed = await index.saveSnapshot(tenant).then((path) => `resolved ${path}`, (error: Error) => error.message);
    } finally {
      spy.mockRestore();
    }
    expect(stopped).toBe(true);
    expect(failed).toMatch(/retries|connect|closed/i);
    redis = await TestRedis.start(port, { appendOnlyDir: aof });
    await until(async () => (await client!.ping().catch(() => '')) === 'PONG', 30_000, 'the client to reconnect');

    // The lease the failed attempt could not give back (Redis away) must not hold off the next one for an hour.
    let saved: string | undefined;
    await until(async () => (saved = await index!.saveSnapshot(tenant)) !== undefined, 20_000, 'a snapshot after Redis came back');
    expect(saved).toMatch(/\.faiss$/);
  }, 180_000);
});
