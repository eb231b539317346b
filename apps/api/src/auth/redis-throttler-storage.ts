import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import type Redis from 'ioredis';

/**
 * Rate-limit counters in Redis (@nest-lab/throttler-storage-redis: one Lua INCR + PEXPIRE per request), so
 * every API process counts against the same budget. Keys sit under the product's prefix and expire with the
 * window. Uses the API's shared client, which RedisModule closes.
 */
export class RedisThrottlerStorage extends ThrottlerStorageRedisService {
  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    super(redis);
  }

  override increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string) {
    return super.increment(`${this.prefix}:ratelimit:${key}`, ttl, limit, blockDuration, throttlerName);
  }
}
