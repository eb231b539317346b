import type Redis from 'ioredis';
import { faceIdStem, RedisKeys, TenantId } from '@app/contracts';
import { ContentStore } from './content-store';
import { FaceSnapshots } from './face-snapshots';
import { DECLARED_KEYS_LUA, FORGET_FACES_LUA, keysToForget, runDeclared } from './face-store';

/**
 * Erasure of one tenant's image in Redis: its faces (as DELETE …/faces does), every result of every model
 * asked of it, the set of those models, its crash record (PoisonImages) and its metadata, in one script. Workers write results and faces only
 * while the metadata exists (checked inside their own scripts), so a job that runs on after this writes
 * nothing back. Returns {1, faces removed, other images updated, results removed, 1 if the image existed, the
 * faces' tombstone sequence number or 0, 1 if a crash record was removed}, or {0, key names…} without writing anything when it touches keys not
 * declared (a result key per model, the faces': see FORGET_FACES_LUA); runDeclared declares them and runs it again.
 */
const ERASE_IMAGE = `${DECLARED_KEYS_LUA}${FORGET_FACES_LUA}
local imageKey, modelsKey, crashesKey = KEYS[3], KEYS[4], KEYS[5]
local prefix, imageHash = ARGV[1], ARGV[2]
local resultKeys = {}
for _, model in ipairs(redis.call('SMEMBERS', modelsKey)) do
  table.insert(resultKeys, prefix .. ':result:' .. imageHash .. ':' .. model)
end
local missing = undeclared(resultKeys)
if #missing > 0 then return {0, unpack(missing)} end
local existed = redis.call('EXISTS', imageKey)
local removed, missingFaceKeys = forget_faces(KEYS[1], KEYS[2], prefix, imageHash, ARGV[3])
if not removed then return {0, unpack(missingFaceKeys)} end
local results = 0
for _, resultKey in ipairs(resultKeys) do
  results = results + redis.call('DEL', resultKey)
end
redis.call('DEL', imageKey, modelsKey)
local crashes = redis.call('DEL', crashesKey)
return {1, removed[1], removed[2], results, existed, removed[4], crashes}
`;

export interface ErasureReport {
  /** Whether the tenant had the image at all. */
  existed: boolean;
  removedFaces: number;
  /** Other images of the tenant whose match sets named this one. */
  updatedImages: number;
  removedResults: number;
  /** Whether the image's crash record (worker deaths counted against it, PoisonImages) was deleted. */
  removedCrashRecord: boolean;
  /** Whether the tenant's copy of the bytes was deleted. */
  removedBytes: boolean;
  /** Face-index snapshot files deleted because they could hold the erased faces' vectors. */
  removedSnapshots: number;
  /**
   * Some of those files could not be deleted now (FaceSnapshots.purgeOrDefer): workers retry until they are.
   * The faces are no longer returned either way.
   */
  snapshotPurgePending: boolean;
}

/** Why the snapshot purge was deferred (for the caller's log line; not part of the answer). */
export type ErasureOutcome = ErasureReport & { purgeDeferredBy?: Error };

/**
 * Erases everything one tenant holds of one image: its Redis records (ERASE_IMAGE), its copy of the bytes,
 * and every face-index snapshot file that could still hold its faces' vectors (FaceSnapshots.purgeBefore).
 * Another tenant's copy of the same file is a different record and a different file, untouched. Queued jobs are
 * the caller's (the API removes them from the queue; one already running writes nothing back). The workers'
 * memory-mapped copy of a purged snapshot is not touched here: they stop returning the faces at once (log
 * entries gone) and drop the mapping when they swap to the next snapshot, which the purge makes due at once
 * (within about a minute and a half: FaceSnapshots).
 */
export class ImageErasure {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly content: ContentStore,
    private readonly snapshots: FaceSnapshots,
  ) {}

  async erase(tenant: TenantId, imageHash: string): Promise<ErasureOutcome> {
    const k = this.keys.tenant(tenant);
    const stem = faceIdStem(tenant, imageHash);
    const [models, faceKeys] = await Promise.all([this.redis.smembers(k.imageModels(imageHash)), keysToForget(this.redis, k, stem, imageHash)]);
    const found = [...models.map((model) => k.result(imageHash, model)), ...faceKeys];
    const fixed = [k.faceSeq(), k.faceLog(), k.image(imageHash), k.imageModels(imageHash), k.imageCrashes(imageHash)];
    const [removedFaces, updatedImages, removedResults, existed, tombstoneSeq, removedCrashes] = await runDeclared(this.redis, ERASE_IMAGE, fixed, found, [k.prefix, imageHash, stem]);
    const removedBytes = await this.content.remove(tenant, imageHash);
    const purge = await this.snapshots.purgeOrDefer(tenant, tombstoneSeq);
    return {
      existed: existed === 1,
      removedFaces,
      updatedImages,
      removedResults,
      removedCrashRecord: removedCrashes === 1,
      removedBytes,
      removedSnapshots: purge.removed,
      snapshotPurgePending: purge.deferred !== undefined,
      ...(purge.deferred ? { purgeDeferredBy: purge.deferred } : {}),
    };
  }
}
