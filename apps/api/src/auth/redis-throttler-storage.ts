import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import type Redis from 'ioredis';
import { RedisKeys } from '@app/contracts';

/**
 * Rate-limit counters in Redis (@nest-lab/throttler-storage-redis: one Lua INCR + PEXPIRE per request), so
 * every API process counts against the same budget. Keys sit under the product's prefix and expire with the
 * window; the library wraps each key in braces, so its two keys (hits, block) share a Cluster slot. Uses the API's shared client, which RedisModule closes.
 */
export class RedisThrottlerStorage extends ThrottlerStorageRedisService {
  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    super(redis);
  }

  override increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string) {
    return super.increment(`${this.keys.prefix}:ratelimit:${key}`, ttl, limit, blockDuration, throttlerName);
  }
}
