import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { RedisKeys, WorkerHeartbeat } from '@app/contracts';
import { ModelCatalog } from '@app/models';
import { REDIS_CLIENT } from '@app/redis';

/**
 * What models exist (models/manifest.json, read without loading weights) and which ones live workers
 * have loaded (their heartbeat keys).
 */
@Injectable()
export class ModelDirectory {
  readonly catalog: ModelCatalog;

  constructor(
    config: AppConfig,
    private readonly keys: RedisKeys,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
  ) {
    this.catalog = ModelCatalog.load(config.values.MODELS_DIR);
  }

  /** Heartbeats of the workers alive now. The number of workers is small; SCAN keeps Redis responsive anyway. */
  async liveWorkers(): Promise<WorkerHeartbeat[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', this.keys.workerPattern(), 'COUNT', 200);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0' && keys.length < 10_000);
    if (keys.length === 0) return [];
    const values = await this.redis.mget(keys);
    return values.filter((value): value is string => value !== null).map((value) => JSON.parse(value) as WorkerHeartbeat);
  }
}
