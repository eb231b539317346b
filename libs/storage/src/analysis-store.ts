import type Redis from 'ioredis';
import { AnalysisRecord, ImageMetadata, RedisKeys, TenantId } from '@app/contracts';

/**
 * Stores a result and tells anyone following the image, only while the tenant still has the image: a job
 * that finishes after the image was erased writes nothing back. Returns 1 when stored.
 */
const PUT_RESULT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`;

/** SADD the models only while the image exists, so a late request cannot re-create half an erased image. */
const ADD_MODELS = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], unpack(ARGV))
return 1
`;

/**
 * Analysis state in Redis, per tenant and image hash (+ model): results with a TTL, image metadata, the models
 * requested per image, and a pub/sub notice when a model finishes. Both apps use it; results are written by
 * workers, and by the API only for a pair whose image is poison for its model (AnalysisJobs.ensure: the
 * IMAGE_CRASHED_WORKER failure record, instead of queueing a job that would kill a worker).
 */
export class AnalysisStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async getResult(tenant: TenantId, hash: string, model: string): Promise<AnalysisRecord | undefined> {
    const raw = await this.redis.get(this.keys.tenant(tenant).result(hash, model));
    return raw ? (JSON.parse(raw) as AnalysisRecord) : undefined;
  }

  async getResults(tenant: TenantId, hash: string, models: string[]): Promise<Map<string, AnalysisRecord>> {
    const found = new Map<string, AnalysisRecord>();
    if (models.length === 0) return found;
    const k = this.keys.tenant(tenant);
    const values = await this.redis.mget(models.map((model) => k.result(hash, model)));
    values.forEach((raw, i) => raw && found.set(models[i], JSON.parse(raw) as AnalysisRecord));
    return found;
  }

  /** Stores a result (or permanent failure) and tells anyone following the image; false when the image is gone. */
  async putResult(tenant: TenantId, hash: string, record: AnalysisRecord, ttlSeconds: number): Promise<boolean> {
    const k = this.keys.tenant(tenant);
    const stored = await this.redis.eval(PUT_RESULT, 2, k.image(hash), k.result(hash, record.model), JSON.stringify(record), ttlSeconds, k.imageEvents(hash), record.model);
    return stored === 1;
  }

  /** Records the tenant's image (its first sighting wins) and the models asked of it. */
  async registerImage(tenant: TenantId, meta: ImageMetadata, models: string[]): Promise<void> {
    const k = this.keys.tenant(tenant);
    const multi = this.redis.multi();
    for (const [field, value] of Object.entries(meta)) multi.hsetnx(k.image(meta.hash), field, String(value));
    if (models.length > 0) multi.sadd(k.imageModels(meta.hash), ...models);
    await multi.exec();
  }

  /** Adds models asked of an image the tenant has; false (nothing written) when it has no such image (erased). */
  async addModels(tenant: TenantId, hash: string, models: string[]): Promise<boolean> {
    const k = this.keys.tenant(tenant);
    return (await this.redis.eval(ADD_MODELS, 2, k.image(hash), k.imageModels(hash), ...models)) === 1;
  }

  /** Whether the tenant has the image: the one check behind every route that takes an image hash. */
  async hasImage(tenant: TenantId, hash: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.tenant(tenant).image(hash))) === 1;
  }

  async getImage(tenant: TenantId, hash: string): Promise<ImageMetadata | undefined> {
    const fields = await this.redis.hgetall(this.keys.tenant(tenant).image(hash));
    if (!fields.hash) return undefined;
    return { hash, bytes: Number(fields.bytes), format: fields.format, width: Number(fields.width), height: Number(fields.height), firstSeen: fields.firstSeen };
  }

  async modelsOf(tenant: TenantId, hash: string): Promise<string[]> {
    return (await this.redis.smembers(this.keys.tenant(tenant).imageModels(hash))).sort();
  }

  eventsChannel(tenant: TenantId, hash: string): string {
    return this.keys.tenant(tenant).imageEvents(hash);
  }
}
