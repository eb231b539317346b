import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { RedisKeys, TenantId } from '@app/contracts';
import { FaceSnapshots } from '@app/storage/face-snapshots';
import { faceIndexOnRedis } from '../support/face-index-on-redis';

describe('an erasure whose snapshot files the disk will not delete yet (red team, stop 32)', () => {
  const keys = new RedisKeys('iiq');
  const onRedis = faceIndexOnRedis(keys);

  it('is deferred, not failed: the tombstone number is recorded, and the retry deletes the files and clears it', async () => {
    const tenant = 'stuck' as TenantId;
    const { storageDir, stored, set } = await onRedis.storedTenant(tenant, 120, 71, 's');
    const worker = await onRedis.open(storageDir, 50, pino({ level: 'silent' }));
    const saved = (await worker.saveSnapshot(tenant))!;
    const folder = join(storageDir, tenant, '.face-index');
    // Something the disk refuses to unlink, named as an older snapshot: unlink() of a directory fails (EISDIR),
    // as an immutable folder (chattr +i) or a read-only mount does; root ignores permission bits, so those cannot stand in.
    const blocker = join(folder, 'faces-1-1-0.usearch');
    mkdirSync(blocker);
    const snapshots = new FaceSnapshots(storageDir, onRedis.client, keys);
    const { tombstoneSeq } = await onRedis.store.deleteImageFaces(tenant, stored[0].hash);
    const purge = await snapshots.purgeOrDefer(tenant, tombstoneSeq);
    expect(purge.deferred).toMatchObject({ code: 'EISDIR' });
    expect(Number(await onRedis.client.zscore(keys.facePurgesPending(), tenant))).toBe(tombstoneSeq);
    // The erased face is not returned meanwhile.
    expect((await worker.match(tenant, set.vectors.slice(0, 128), 0.5)).matches.some((m) => m.imageHash === stored[0].hash)).toBe(false);
    // Still refused: the retry reports it and keeps the record.
    expect((await snapshots.retryDeferredPurges()).failed.map((f) => f.tenant)).toEqual([tenant]);
    rmdirSync(blocker);
    expect(await snapshots.retryDeferredPurges()).toEqual({ purged: [tenant], failed: [] });
    expect(existsSync(saved)).toBe(false);
    expect(readdirSync(folder).filter((name) => name.startsWith('faces-'))).toEqual([]);
    expect(await onRedis.client.zscore(keys.facePurgesPending(), tenant)).toBeNull();
  });

  it('a later purge that reaches the recorded number clears it; one below it does not', async () => {
    const tenant = 'later' as TenantId;
    const snapshots = new FaceSnapshots(onRedis.dirs[0], onRedis.client, keys);
    await onRedis.client.zadd(keys.facePurgesPending(), 'GT', '40', tenant);
    await snapshots.purgeOrDefer(tenant, 30);
    expect(await onRedis.client.zscore(keys.facePurgesPending(), tenant)).toBe('40');
    await snapshots.purgeOrDefer(tenant, 41);
    expect(await onRedis.client.zscore(keys.facePurgesPending(), tenant)).toBeNull();
  });
});
