import { rmSync, writeFileSync } from 'node:fs';
import { RedisKeys, TenantId } from '@app/contracts';
import { FaceSnapshots } from '@app/storage/face-snapshots';
import { faceIndexOnRedis } from '../support/face-index-on-redis';

describe('snapshot failure backoff (red team 3)', () => {
  const keys = new RedisKeys('iiq');
  const onRedis = faceIndexOnRedis(keys);

  it('a check that finds the lease held by another worker (no attempt) does not end the run of failures: the next failure waits two minutes, not one', async () => {
    const tenant = 'backoff-lease' as TenantId;
    const { storageDir } = await onRedis.storedTenant(tenant, 300, 35, 'b');
    const worker = await onRedis.open(storageDir, 50);
    expect(await worker.saveSnapshot(tenant)).toBeDefined();
    const snapshots = new FaceSnapshots(storageDir, onRedis.client, keys);
    // The tenant's snapshot folder replaced by a file: every attempt fails for real (mkdir: EEXIST), as on a broken volume.
    const folder = snapshots.folder(tenant);
    rmSync(folder, { recursive: true });
    writeFileSync(folder, 'not a folder');
    const internals = worker as unknown as {
      snapshotIfDue(t: TenantId, f: unknown): Promise<void>;
      tenants: Map<TenantId, unknown>;
      snapshotChecked: Map<TenantId, number>;
      snapshotSaved: Map<TenantId, number>;
      snapshotFailures: Map<TenantId, { failures: number; retryAt: number }>;
    };
    const check = async () => {
      internals.snapshotChecked.delete(tenant);
      internals.snapshotSaved.delete(tenant);
      return internals.snapshotIfDue(tenant, internals.tenants.get(tenant)).then(
        () => undefined,
        (error: unknown) => error,
      );
    };
    expect(String(await check())).toMatch(/EEXIST|ENOTDIR/);
    expect(internals.snapshotFailures.get(tenant)?.failures).toBe(1);
    // Its minute is over (moved, not waited for); meanwhile another worker holds the lease: this check attempts nothing.
    internals.snapshotFailures.get(tenant)!.retryAt = 0;
    const other = await snapshots.lease(tenant);
    expect(other).toBeDefined();
    expect(await check()).toBeUndefined();
    await other!();
    // The failures in a row go on: the next one is the second, and the one after waits two minutes.
    const before = Date.now();
    expect(String(await check())).toMatch(/EEXIST|ENOTDIR/);
    expect(internals.snapshotFailures.get(tenant)?.failures).toBe(2);
    expect(internals.snapshotFailures.get(tenant)!.retryAt - before).toBeGreaterThanOrEqual(2 * 60_000);
    rmSync(folder);
  }, 120_000);
});
