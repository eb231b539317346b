import { Global, Module } from '@nestjs/common';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { RedisKeys } from '@app/contracts';
import { REDIS_CLIENT } from '@app/redis';
import { AnalysisStore } from './analysis-store';
import { CONTENT_STORE, ContentStore } from './content-store';
import { FaceSnapshots } from './face-snapshots';
import { FaceStore } from './face-store';
import { FileContentStore } from './file-content-store';
import { ImageErasure } from './image-erasure';
import { ImageLocks } from './image-lock';
import { PoisonImages } from './poison-images';

/** The image store and face-index snapshots (STORAGE_DIR on disk), the analysis and face stores and poison-image records (Redis) and erasure, for both apps; all per tenant. */
@Global()
@Module({
  providers: [
    { provide: CONTENT_STORE, inject: [AppConfig], useFactory: (config: AppConfig) => new FileContentStore(config.values.STORAGE_DIR) },
    { provide: FaceStore, inject: [REDIS_CLIENT, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new FaceStore(redis, keys) },
    { provide: AnalysisStore, inject: [REDIS_CLIENT, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new AnalysisStore(redis, keys) },
    {
      provide: FaceSnapshots,
      inject: [AppConfig, REDIS_CLIENT, RedisKeys],
      useFactory: (config: AppConfig, redis: Redis, keys: RedisKeys) => new FaceSnapshots(config.values.STORAGE_DIR, redis, keys),
    },
    {
      provide: ImageErasure,
      inject: [REDIS_CLIENT, RedisKeys, CONTENT_STORE, FaceSnapshots],
      useFactory: (redis: Redis, keys: RedisKeys, content: ContentStore, snapshots: FaceSnapshots) => new ImageErasure(redis, keys, content, snapshots),
    },
    { provide: ImageLocks, inject: [REDIS_CLIENT, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new ImageLocks(redis, keys) },
    {
      provide: PoisonImages,
      inject: [REDIS_CLIENT, RedisKeys, AppConfig],
      useFactory: (redis: Redis, keys: RedisKeys, config: AppConfig) => new PoisonImages(redis, keys, config.values.POISON_STALL_LIMIT, config.values.POISON_TTL_SECONDS, config.values.LOCK_DURATION_MS),
    },
  ],
  exports: [CONTENT_STORE, AnalysisStore, FaceStore, FaceSnapshots, ImageErasure, ImageLocks, PoisonImages],
})
export class StorageModule {}
