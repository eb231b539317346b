import 'reflect-metadata';
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseEnv } from '@app/config';
import { asTenantId, faceIdStem, RedisKeys, TenantId } from '@app/contracts';
import { RedisConnection } from '@app/redis';

/**
 * One-off move of data written before tenants existed (every key `<prefix>:image:…`, `…:result:…`,
 * `…:face:…`, `…:faces:log|seq`, and files `STORAGE_DIR/<ab>/<cd>/<sha256>`) into one tenant, so that upgrading
 * loses nothing: afterwards the tenant reads, matches and erases those images like any other.
 *
 *   npm run migrate:tenants -- --tenant default      (the tenant of a deployment without API_KEYS)
 *
 * Run it with API and workers stopped and the queue drained (old jobs carry no tenant). It reads the keyspace
 * with SCAN (a maintenance job, not a request path). Face ids change to the tenant's scheme (faceIdStem), so
 * match sets and the face log are rewritten with the new ids; the log keeps its sequence numbers, and old
 * tombstones are dropped (the faces they removed are gone from the log already). Idempotent: a second run finds
 * nothing left to move.
 */
async function migrate(tenant: TenantId): Promise<void> {
  const env = parseEnv(process.env);
  // Data from before tenants only exists on a single Redis (Cluster support came later); its RENAMEs from old keys
  // to tenant-tagged ones would cross slots on a Cluster anyway.
  if (env.REDIS_CLUSTER_NODES !== undefined) throw new Error('REDIS_CLUSTER_NODES is set: run it against the single Redis (REDIS_URL) or Sentinel that holds the old data, before moving to a Cluster');
  const redis = RedisConnection.fromEnv(env).client({ maxRetriesPerRequest: 3 });
  const keys = new RedisKeys(env.QUEUE_PREFIX);
  const prefix = keys.prefix;
  const k = keys.tenant(tenant);
  const counts = { images: 0, results: 0, faces: 0, files: 0 };
  try {
    const scan = async (pattern: string): Promise<string[]> => {
      const found: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        found.push(...batch);
      } while (cursor !== '0');
      return found;
    };
    const old = (rest: string) => `${prefix}:${rest}`;
    const hashOf = (key: string) => /:image:([0-9a-f]{64})/.exec(key)?.[1];

    // Face ids: old `<hash24>-<n>` → `<faceIdStem(tenant, hash)>-<n>`, for every processed image.
    const faceIdMap = new Map<string, string>();
    const imageFacesKeys = (await scan(old('image:*:faces'))).filter((key) => !key.includes('{'));
    for (const key of imageFacesKeys) {
      const hash = hashOf(key)!;
      const record = JSON.parse((await redis.get(key)) ?? '{"faceIds":[]}') as { faceIds: string[] };
      record.faceIds.forEach((id, i) => faceIdMap.set(id, `${faceIdStem(tenant, hash)}-${i}`));
    }
    const newFaceId = (id: string) => faceIdMap.get(id) ?? id;

    // Faces, their match sets, then the log (same sequence numbers, new ids; old tombstones dropped).
    for (const key of (await scan(old('face:*'))).filter((key) => !key.includes('{') && !key.endsWith(':matches'))) {
      const oldId = key.slice(old('face:').length);
      const fields = await redis.hgetall(key);
      await redis.hset(k.face(newFaceId(oldId)), fields);
      const matches = await redis.zrange(`${key}:matches`, '0', '-1', 'WITHSCORES');
      const remapped: (string | number)[] = [];
      for (let i = 0; i < matches.length; i += 2) remapped.push(Number(matches[i + 1]), newFaceId(matches[i]));
      if (remapped.length > 0) await redis.zadd(k.faceMatches(newFaceId(oldId)), ...remapped);
      await redis.del(key, `${key}:matches`);
      counts.faces++;
    }
    const entries = (await redis.xrange(old('faces:log'), '-', '+')) as [string, string[]][];
    for (const [id, flat] of entries) {
      const fields: Record<string, string> = {};
      for (let i = 0; i < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
      if (fields.op !== 'add') continue;
      await redis.xadd(k.faceLog(), id, 'op', 'add', 'faceId', newFaceId(fields.faceId), 'imageHash', fields.imageHash, 'embedding', fields.embedding);
    }
    if (entries.length > 0) await redis.del(old('faces:log'));
    if (await redis.exists(old('faces:seq'))) await redis.rename(old('faces:seq'), k.faceSeq());
    if (counts.faces > 0) await redis.sadd(keys.faceTenants(), tenant);
    for (const key of imageFacesKeys) {
      const record = JSON.parse((await redis.get(key))!) as { faceIds: string[] };
      record.faceIds = record.faceIds.map(newFaceId);
      await redis.set(k.imageFaces(hashOf(key)!), JSON.stringify(record));
      await redis.del(key);
    }

    // Image metadata, models, match sets and results keep their names inside the tenant.
    for (const key of (await scan(old('image:*'))).filter((key) => !key.includes('{') && !key.endsWith(':faces'))) {
      const hash = hashOf(key)!;
      const target = key.endsWith(':models') ? k.imageModels(hash) : key.endsWith(':matches') ? k.imageMatches(hash) : k.image(hash);
      await redis.rename(key, target);
      if (target === k.image(hash)) counts.images++;
    }
    for (const key of (await scan(old('result:*'))).filter((key) => !key.includes('{'))) {
      const [, , hash, model] = key.split(':');
      await redis.rename(key, k.result(hash, model));
      counts.results++;
    }

    // Files: STORAGE_DIR/<ab>/<cd>/<hash> → STORAGE_DIR/<tenant>/<ab>/<cd>/<hash>.
    const root = resolve(env.STORAGE_DIR);
    for (const ab of existsSync(root) ? readdirSync(root).filter((name) => /^[0-9a-f]{2}$/.test(name)) : []) {
      for (const cd of readdirSync(join(root, ab)).filter((name) => /^[0-9a-f]{2}$/.test(name))) {
        for (const file of readdirSync(join(root, ab, cd)).filter((name) => /^[0-9a-f]{64}$/.test(name))) {
          mkdirSync(join(root, tenant, ab, cd), { recursive: true });
          renameSync(join(root, ab, cd, file), join(root, tenant, ab, cd, file));
          counts.files++;
        }
        rmdirSync(join(root, ab, cd), { recursive: false });
      }
      rmdirSync(join(root, ab));
    }
    process.stdout.write(`${JSON.stringify({ action: 'migrate.tenants', tenant, ...counts })}\n`);
  } finally {
    redis.disconnect();
  }
}

const flag = process.argv.indexOf('--tenant');
const name = flag > 0 ? process.argv[flag + 1] : undefined;
if (!name) {
  process.stderr.write('usage: npm run migrate:tenants -- --tenant <name>   (default: the tenant of a deployment without API_KEYS)\n');
  process.exit(2);
}
migrate(asTenantId(name)).catch((error) => {
  process.stderr.write(`migration failed: ${(error as Error).message}\n`);
  process.exit(1);
});
