import { DynamicModule, Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { RedisKeys } from '@app/contracts';
import { redisOptionsFromUrl } from './redis-options';

export const REDIS_CLIENT = Symbol('REDIS_CLIENT');

/** Closes the shared connection when the app shuts down. */
@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(@Inject(REDIS_CLIENT) private readonly redis: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

export interface RedisModuleOptions {
  /**
   * API: no offline queue, so while Redis is down calls fail at once and the request gets 503 instead of
   * hanging. Worker: false, so a short blip delays its writes rather than failing its jobs.
   */
  failFast: boolean;
}

/** One ioredis connection for the product's own keys (RedisKeys); BullMQ keeps its own connections. */
@Global()
@Module({})
export class RedisModule {
  static forRoot(options: RedisModuleOptions): DynamicModule {
    return {
      module: RedisModule,
      providers: [
        {
          provide: REDIS_CLIENT,
          inject: [AppConfig],
          useFactory: async (config: AppConfig) => {
            const client = new Redis({
              ...redisOptionsFromUrl(config.values.REDIS_URL),
              lazyConnect: true,
              maxRetriesPerRequest: options.failFast ? 1 : 20,
              enableOfflineQueue: !options.failFast,
            });
            // Connected before anything uses it (with no offline queue, early commands would fail).
            await client.connect();
            return client;
          },
        },
        { provide: RedisKeys, inject: [AppConfig], useFactory: (config: AppConfig) => new RedisKeys(config.values.QUEUE_PREFIX) },
        RedisCloser,
      ],
      exports: [REDIS_CLIENT, RedisKeys],
    };
  }
}
