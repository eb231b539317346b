import { DynamicModule, Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { RedisKeys } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { closingClient, onConnectionLost } from './connection-end';
import { logConnectionErrors } from './connection-errors';
import { assertNoEviction } from './eviction-policy';
import { RedisConnection } from './redis-connection';
import { WorkerRegistry } from './worker-registry';

export const REDIS_CLIENT = Symbol('REDIS_CLIENT');

/**
 * Closes the shared connection when the app shuts down, and the Cluster instances given to BullMQ (Nest has closed
 * BullMQ's queues and workers by then, in onModuleDestroy).
 */
@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly connection: RedisConnection,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    closingClient(this.redis);
    await this.redis.quit().catch(() => this.redis.disconnect());
    await this.connection.close();
  }
}

export interface RedisModuleOptions {
  /**
   * API: no offline queue, so while Redis is down calls fail at once and the request gets 503 instead of
   * hanging. Worker: false, so a short blip delays its writes rather than failing its jobs.
   */
  failFast: boolean;
  /** API: REDIS_COMMAND_TIMEOUT_MS applies to this connection (never blocking: the product's own keys and the rate limit). */
  commandTimeout?: boolean;
}

/**
 * The RedisConnection every connection is made from (REDIS_URL or Sentinel), and one ioredis connection for the
 * product's own keys (RedisKeys); BullMQ keeps its own connections, made from the same RedisConnection. The app does not
 * start on a Redis that may evict keys (see evictionProblem) unless REDIS_ALLOW_EVICTION accepts the risk.
 */
@Global()
@Module({})
export class RedisModule {
  static forRoot(options: RedisModuleOptions): DynamicModule {
    return {
      module: RedisModule,
      providers: [
        { provide: RedisConnection, inject: [AppConfig], useFactory: (config: AppConfig) => RedisConnection.fromEnv(config.values) },
        {
          provide: REDIS_CLIENT,
          inject: [AppConfig, RedisConnection, APP_LOGGER],
          useFactory: async (config: AppConfig, connection: RedisConnection, logger: Logger) => {
            const client = connection.client({
              lazyConnect: true,
              maxRetriesPerRequest: options.failFast ? 1 : 20,
              enableOfflineQueue: !options.failFast,
              ...(options.commandTimeout && config.values.REDIS_COMMAND_TIMEOUT_MS > 0 ? { commandTimeout: config.values.REDIS_COMMAND_TIMEOUT_MS } : {}),
            });
            logConnectionErrors(client, logger, connection.describe());
            // One line per (re)connection, naming the node reached: after a failover, the new primary.
            let connectedBefore = false;
            client.on('ready', () => {
              const node = client.stream ? `${client.stream.remoteAddress}:${client.stream.remotePort}` : undefined;
              logger.info({ action: connectedBefore ? 'redis.reconnected' : 'redis.connected', redis: connection.describe(), node }, connectedBefore ? 'reconnected to Redis' : 'connected to Redis');
              connectedBefore = true;
            });
            // A client that ends for good (ioredis will not reconnect) leaves the process answering nothing but
            // "Connection is closed." while it looks alive: exit (code 1, through the graceful shutdown) for the
            // supervisor to start a fresh one.
            onConnectionLost(client, () => {
              logger.fatal({ action: 'redis.connection_lost', redis: connection.describe() }, 'the Redis connection ended and will not reconnect: exiting (code 1) for the supervisor to start a fresh process');
              process.exitCode = 1;
              process.kill(process.pid, 'SIGTERM');
            });
            // Connected before anything uses it (with no offline queue, early commands would fail).
            await client.connect();
            try {
              const policy = await assertNoEviction(client, config.values.REDIS_ALLOW_EVICTION);
              if (policy !== 'noeviction') logger.warn({ action: 'redis.eviction_accepted', maxmemoryPolicy: policy }, `Redis maxmemory-policy is "${policy}" (REDIS_ALLOW_EVICTION=true): accepted work may be lost when Redis fills up`);
            } catch (error) {
              closingClient(client);
              client.disconnect();
              throw error;
            }
            return client;
          },
        },
        { provide: RedisKeys, inject: [AppConfig], useFactory: (config: AppConfig) => new RedisKeys(config.values.QUEUE_PREFIX) },
        { provide: WorkerRegistry, inject: [REDIS_CLIENT, RedisKeys], useFactory: (redis: Redis, keys: RedisKeys) => new WorkerRegistry(redis, keys) },
        RedisCloser,
      ],
      exports: [RedisConnection, REDIS_CLIENT, RedisKeys, WorkerRegistry],
    };
  }
}
