import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { RedisKeys, TenantId } from '@app/contracts';
import { CompressedFaceIndex } from '../../apps/worker/src/faces/compressed-face-index';
import { DIMENSIONS } from '../../bench/face-identities';
import { faceIndexOnRedis } from '../support/face-index-on-redis';
import { until } from '../support/load';

const withBinding = CompressedFaceIndex.available || process.env.CI === 'true' ? describe : describe.skip;

withBinding('FACE_INDEX_STORAGE changed across restarts (red team)', () => {
  const keys = new RedisKeys('iiq');
  const onRedis = faceIndexOnRedis(keys);

  /** 300 faces of `tenant` stored, and a worker under pq that wrote their first (.faiss) snapshot, then stopped. */
  const pqSnapshotWritten = async (tenant: TenantId, seed: number) => {
    const { storageDir, set } = await onRedis.storedTenant(tenant, 300, seed, 'img');
    const pq = await onRedis.open(storageDir, 200, undefined, 'pq', 200);
    await until(() => pq.describe(tenant)?.snapshot?.endsWith('.faiss') === true, 30_000, "the cold-built PQ base's first snapshot");
    await pq.onModuleDestroy();
    return { storageDir, set };
  };

  it('pq → int8: a worker restarted with int8 on a tenant whose newest snapshot is a .faiss file writes an int8 (.usearch) snapshot, not PQ again', async () => {
    const tenant = 'switch-pq-int8' as TenantId;
    const { storageDir, set } = await pqSnapshotWritten(tenant, 8);


    const int8 = await onRedis.open(storageDir, 200, undefined, 'int8', 200);
    expect(int8.describe(tenant)?.snapshot?.endsWith('.faiss')).toBe(true);
    const saved = await int8.saveSnapshot(tenant);
    expect(saved?.endsWith('.usearch')).toBe(true);
    expect(readdirSync(join(storageDir, tenant, '.face-index')).filter((name) => name.endsWith('.faiss'))).toEqual([]);
    expect(int8.describe(tenant)).toMatchObject({ indexed: 300, tail: 0 });
    expect((await int8.match(tenant, set.vectors.slice(0, DIMENSIONS), 0.99)).matches.length).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('a PQ tenant that shrinks below the PQ line gets an int8 (.usearch) snapshot built from the log, and the removed faces never return', async () => {
    const tenant = 'shrinks-below-pq' as TenantId;
    const { storageDir, set } = await pqSnapshotWritten(tenant, 10);
    // 200 of the 300 faces deleted: 100 are left, under pqMinFaces (200) and a scrubbed share far past PQ_REBUILD_SHARE.
    for (let row = 0; row < 200; row++) await onRedis.store.deleteImageFaces(tenant, createHash('sha256').update(`img-${row}`).digest('hex'));

    const pq = await onRedis.open(storageDir, 50, undefined, 'pq', 200);
    expect(pq.describe(tenant)?.snapshot?.endsWith('.faiss')).toBe(true);
    const saved = await pq.saveSnapshot(tenant);
    expect(saved?.endsWith('.usearch')).toBe(true);
    expect(pq.describe(tenant)).toMatchObject({ indexed: 100, tail: 0 });
    for (const row of [0, 150, 199]) expect((await pq.match(tenant, set.vectors.slice(row * DIMENSIONS, (row + 1) * DIMENSIONS), 0.99)).matches).toEqual([]);
    expect((await pq.match(tenant, set.vectors.slice(250 * DIMENSIONS, 251 * DIMENSIONS), 0.99)).matches.length).toBe(1);
  }, 60_000);

  it('pq → a machine without the binding (int8): the .faiss file it cannot open is not retried at every snapshot check (one failed load at start, no swap attempts)', async () => {
    const tenant = 'switch-no-binding' as TenantId;
    const { storageDir } = await pqSnapshotWritten(tenant, 9);

    // This worker's machine has no FAISS binding: it cannot load the .faiss file.
    const available = jest.spyOn(CompressedFaceIndex, 'available', 'get').mockReturnValue(false);
    const load = jest.spyOn(CompressedFaceIndex, 'load').mockRejectedValue(new Error('the FAISS face index is not built on this machine'));
    try {
      const int8 = await onRedis.open(storageDir, 200, undefined, 'int8', 200);
      expect(int8.describe(tenant)).toMatchObject({ snapshot: undefined });
      expect(int8.describe(tenant)!.indexed + int8.describe(tenant)!.tail).toBe(300);
      const loadsAtStart = load.mock.calls.length;
      const internals = int8 as unknown as { snapshotIfDue(t: TenantId, f: unknown): Promise<void>; tenants: Map<TenantId, unknown>; snapshotChecked: Map<TenantId, number> };
      for (let check = 0; check < 3; check++) {
        internals.snapshotChecked.delete(tenant);
        await internals.snapshotIfDue(tenant, internals.tenants.get(tenant));
      }
      expect(load.mock.calls.length).toBe(loadsAtStart);
    } finally {
      available.mockRestore();
      load.mockRestore();
    }
  }, 60_000);
});
