import pino from 'pino';
import { RedisKeys, TenantId } from '@app/contracts';
import { FaceSnapshots } from '@app/storage/face-snapshots';
import { FaceIndex } from '../../apps/worker/src/faces/face-index';
import { DIMENSIONS } from '../../bench/face-identities';
import { faceIndexOnRedis } from '../support/face-index-on-redis';

describe("a worker's start does not wait for its tenants' face indexes (red team, stop 32)", () => {
  const keys = new RedisKeys('iiq');
  const onRedis = faceIndexOnRedis(keys);

  it('onModuleInit returns before a tenant is loaded; a match waits for that load and answers as after it; loaded() resolves with every face', async () => {
    const tenant = 'big' as TenantId;
    const { storageDir, set } = await onRedis.storedTenant(tenant, 2000, 61, 'b');
    const index = new FaceIndex(onRedis.store, new FaceSnapshots(storageDir, onRedis.client, keys), { minFaces: 50, settleMs: 0, snapshotEvery: 1_000_000, searchWidth: 256, storage: 'int8' }, pino({ level: 'silent' }));
    try {
      await index.onModuleInit();
      // Awaited before, a tenant rebuilt from its log held the worker's start (its health port, every other job)
      // for as long as the build took: minutes at 10^5 faces, an hour at 10^6.
      expect(index.describe(tenant)).toBeUndefined();
      const probe = set.vectors.slice(0, DIMENSIONS);
      const early = await index.match(tenant, probe, 0.999);
      await index.loaded();
      expect(index.describe(tenant)).toMatchObject({ lastSeq: 2000 });
      expect((await index.match(tenant, probe, 0.999)).matches).toEqual(early.matches);
      expect(early.matches.length).toBeGreaterThan(0);
    } finally {
      await index.onModuleDestroy();
    }
  });
});
