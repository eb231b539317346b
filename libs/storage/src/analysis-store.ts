import type Redis from 'ioredis';
import { AnalysisRecord, ImageMetadata, RedisKeys } from '@app/contracts';

/**
 * Analysis state in Redis, keyed by image hash (+ model): results with a TTL, image metadata, the models
 * requested per image, and a pub/sub notice when a model finishes. Both apps use it; results are written
 * only by workers.
 */
export class AnalysisStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async getResult(hash: string, model: string): Promise<AnalysisRecord | undefined> {
    const raw = await this.redis.get(this.keys.result(hash, model));
    return raw ? (JSON.parse(raw) as AnalysisRecord) : undefined;
  }

  async getResults(hash: string, models: string[]): Promise<Map<string, AnalysisRecord>> {
    const found = new Map<string, AnalysisRecord>();
    if (models.length === 0) return found;
    const values = await this.redis.mget(models.map((model) => this.keys.result(hash, model)));
    values.forEach((raw, i) => raw && found.set(models[i], JSON.parse(raw) as AnalysisRecord));
    return found;
  }

  /** Stores a result (or permanent failure) and tells anyone following the image. */
  async putResult(hash: string, record: AnalysisRecord, ttlSeconds: number): Promise<void> {
    await this.redis
      .multi()
      .set(this.keys.result(hash, record.model), JSON.stringify(record), 'EX', ttlSeconds)
      .publish(this.keys.imageEvents(hash), record.model)
      .exec();
  }

  /** Records the image (first sighting wins) and the models asked of it. */
  async registerImage(meta: ImageMetadata, models: string[]): Promise<void> {
    const multi = this.redis.multi();
    for (const [field, value] of Object.entries(meta)) multi.hsetnx(this.keys.image(meta.hash), field, String(value));
    if (models.length > 0) multi.sadd(this.keys.imageModels(meta.hash), ...models);
    await multi.exec();
  }

  async getImage(hash: string): Promise<ImageMetadata | undefined> {
    const fields = await this.redis.hgetall(this.keys.image(hash));
    if (!fields.hash) return undefined;
    return { hash, bytes: Number(fields.bytes), format: fields.format, width: Number(fields.width), height: Number(fields.height), firstSeen: fields.firstSeen };
  }

  async modelsOf(hash: string): Promise<string[]> {
    return (await this.redis.smembers(this.keys.imageModels(hash))).sort();
  }

  eventsChannel(hash: string): string {
    return this.keys.imageEvents(hash);
  }
}
