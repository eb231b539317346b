import { RedisKeys, TenantId } from '@app/contracts';
import { CompressedFaceIndex } from '../../apps/worker/src/faces/compressed-face-index';
import { DIMENSIONS } from '../../bench/face-identities';
import { faceIndexOnRedis } from '../support/face-index-on-redis';

const withBinding = CompressedFaceIndex.available || process.env.CI === 'true' ? describe : describe.skip;

withBinding('snapshot format at the PQ line (red team 3)', () => {
  const keys = new RedisKeys('iiq');
  const onRedis = faceIndexOnRedis(keys);

  it('a tenant whose faces were erased since its view last synced gets the snapshot format of the faces left: int8 below the PQ line, not a copy of its PQ base (or a PQ build FAISS refuses)', async () => {
    const tenant = 'erased-before-save' as TenantId;
    const { storageDir, set, stored } = await onRedis.storedTenant(tenant, 300, 43, 'e');
    const worker = await onRedis.open(storageDir, 50, undefined, 'pq', 256);
    expect((await worker.saveSnapshot(tenant))?.endsWith('.faiss')).toBe(true);
    // Its background loop stopped, so nothing reads the log until the save below (an idle tenant's view is synced
    // every LOG_CHECK_MS, 15 s): 200 images erased through the store (as the API does) meanwhile.
    await worker.onModuleDestroy();
    for (const face of stored.slice(0, 200)) await onRedis.store.deleteImageFaces(tenant, face.hash);
    const saved = await worker.saveSnapshot(tenant);
    expect(saved?.split('.').pop()).toBe('usearch');
    expect(worker.describe(tenant)).toMatchObject({ indexed: 100, tail: 0, baseRemoved: 0 });
    expect((await worker.match(tenant, set.vectors.slice(0, DIMENSIONS), 0.999)).matches).toEqual([]);
    expect((await worker.match(tenant, set.vectors.slice(250 * DIMENSIONS, 251 * DIMENSIONS), 0.999)).matches.map((m) => m.imageHash)).toEqual([stored[250].hash]);
  }, 60_000);
});
