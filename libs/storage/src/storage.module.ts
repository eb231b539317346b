import { Global, Module } from '@nestjs/common';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { RedisKeys } from '@app/contracts';
import { REDIS_CLIENT } from '@app/redis';
import { AnalysisStore } from './analysis-store';
import { CONTENT_STORE } from './content-store';
import { FaceStore } from './face-store';
import { FileContentStore } from './file-content-store';

/** The image store (STORAGE_DIR on disk) and the analysis store (Redis), for both apps. */
@Global()
@Module({
  providers: [
    { provide: CONTENT_STORE, inject: [AppConfig], useFactory: (config: AppConfig) => new FileContentStore(config.values.STORAGE_DIR) },
    { provide: FaceStore, inject: [REDIS_CLIENT, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new FaceStore(redis, keys) },
    { provide: AnalysisStore, inject: [REDIS_CLIENT, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new AnalysisStore(redis, keys) },
  ],
  exports: [CONTENT_STORE, AnalysisStore, FaceStore],
})
export class StorageModule {}
