import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import pino, { Logger } from 'pino';
import { RedisKeys, TenantId } from '@app/contracts';
import { FaceSnapshots } from '@app/storage/face-snapshots';
import { FaceStore } from '@app/storage/face-store';
import { FaceIndex } from '../../apps/worker/src/faces/face-index';
import type { FaceIndexStorage } from '../../apps/worker/src/faces/settled-snapshot';
import { clusteredFaces, DIMENSIONS } from '../../bench/face-identities';
import { storeFace } from './stored-face';
import { TestRedis } from './test-redis';

/**
 * A Redis server of its own with a FaceStore on it, for specs that run the worker's FaceIndex inside Jest. Call it
 * in a describe block: it starts the server before the block's tests, and after them closes every index opened
 * with open(), stops the server and deletes the folders pushed onto `dirs`. Fields are set once the block runs.
 */
export function faceIndexOnRedis(keys: RedisKeys) {
  const indexes: FaceIndex[] = [];
  const harness = {
    redis: undefined as unknown as TestRedis,
    client: undefined as unknown as Redis,
    store: undefined as unknown as FaceStore,
    /** Folders deleted after the block. */
    dirs: [] as string[],
    /**
     * A FaceIndex on this Redis with its snapshots under `storageDir` (tails settle at once, snapshots only when
     * asked), initialised; closed after the block.
     */
    async open(storageDir: string, minFaces: number, logger: Logger = pino({ level: 'silent' }), storage: FaceIndexStorage = 'int8', pqMinFaces?: number): Promise<FaceIndex> {
      const index = new FaceIndex(harness.store, new FaceSnapshots(storageDir, harness.client, keys), { minFaces, settleMs: 0, snapshotEvery: 1_000_000, searchWidth: 256, storage, pqMinFaces }, logger);
      indexes.push(index);
      await index.onModuleInit();
      await index.loaded();
      return index;
    },
    /**
     * A tenant of `count` clustered faces (bench/face-identities, `seed`; images named `<prefix>-<row>`) stored and
     * listed among the face tenants, and a fresh folder for its snapshots (deleted after the block). `edit` may
     * change a row's embedding before it is stored.
     */
    async storedTenant(tenant: TenantId, count: number, seed: number, prefix: string, edit?: (row: number, embedding: Float32Array) => void) {
      const storageDir = mkdtempSync(join(tmpdir(), 'iiq-face-tenant-'));
      harness.dirs.push(storageDir);
      await harness.client.sadd(keys.faceTenants(), tenant);
      const set = clusteredFaces(count, 10, seed);
      const stored: { hash: string; faceId: string; seq: number }[] = [];
      for (let row = 0; row < count; row++) {
        const embedding = set.vectors.slice(row * DIMENSIONS, (row + 1) * DIMENSIONS);
        edit?.(row, embedding);
        stored.push(await storeFace(harness.client, harness.store, keys, tenant, `${prefix}-${row}`, embedding));
      }
      return { storageDir, set, stored };
    },
  };

  beforeAll(async () => {
    harness.redis = await TestRedis.start();
    harness.client = harness.redis.client();
    harness.store = new FaceStore(harness.client, keys);
  });

  afterAll(async () => {
    for (const index of indexes) await index.onModuleDestroy();
    harness.client?.disconnect();
    await harness.redis?.stop();
    for (const dir of harness.dirs) rmSync(dir, { recursive: true, force: true });
  });

  return harness;
}
