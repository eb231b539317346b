import type { RedisUrlOptions } from '@app/config/redis-url';
import { RedisConnection } from './redis-connection';
export type { RedisUrlOptions } from '@app/config/redis-url';

/**
 * ioredis options for one Redis at `url` (REDIS_URL as parseRedisUrl reads it), with RedisConnection's READONLY
 * reconnect and retry pause. Prefer RedisConnection.fromEnv, which also knows Sentinel.
 */
export function redisOptionsFromUrl(url: string): RedisUrlOptions & { reconnectOnError: (error: Error) => boolean } {
  return RedisConnection.fromUrl(url).options() as RedisUrlOptions & { reconnectOnError: (error: Error) => boolean };
}
