import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import type Redis from 'ioredis';
import { RedisKeys } from '@app/contracts';

type ThrottlerRecord = Awaited<ReturnType<ThrottlerStorageRedisService['increment']>>;

/** The shared client with the rate-limit script defined on it (ioredis: EVALSHA, EVAL only when Redis lacks it). */
type ThrottlerRedis = Redis & { iiqThrottlerIncrement(hitKey: string, blockKey: string, throttlerName: string, ttl: number, limit: number, blockDuration: number): Promise<unknown> };

/**
 * Rate-limit counters in Redis (@nest-lab/throttler-storage-redis's Lua script: INCR, PTTL, GET, and PEXPIRE once
 * per window), so every API process counts against the same budget. Keys sit under the product's prefix and
 * expire with the window; each key is wrapped in braces as the library does, so its two keys (hits, block)
 * share a Cluster slot. Uses the API's shared client, which RedisModule closes.
 *
 * The library sends its whole script with EVAL on every request (Redis hashes ~900 bytes each time); here the
 * same script and keys run through ioredis' defineCommand, which sends EVALSHA and falls back to EVAL once
 * after a Redis restart (NOSCRIPT).
 */
export class RedisThrottlerStorage extends ThrottlerStorageRedisService {
  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    super(redis);
    const client = redis as ThrottlerRedis;
    if (typeof client.iiqThrottlerIncrement !== 'function') client.defineCommand('iiqThrottlerIncrement', { numberOfKeys: 2, lua: this.scriptSrc });
  }

  override async increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerRecord> {
    // The library's key names, so counters carry over between versions and other API processes.
    const scoped = `${this.keys.prefix}:ratelimit:${key}`;
    const hitKey = `{${scoped}:${throttlerName}}:hits`;
    const blockKey = `{${scoped}:${throttlerName}}:blocked`;
    const results = await (this.redis as ThrottlerRedis).iiqThrottlerIncrement(hitKey, blockKey, throttlerName, ttl, limit, blockDuration);
    if (!Array.isArray(results) || results.length !== 4 || !results.every((value) => typeof value === 'number')) {
      throw new TypeError(`rate-limit script returned ${JSON.stringify(results)}, expected four numbers`);
    }
    const [totalHits, timeToExpire, isBlocked, timeToBlockExpire] = results as number[];
    return { totalHits, timeToExpire: Math.ceil(timeToExpire / 1000), isBlocked: isBlocked === 1, timeToBlockExpire: Math.ceil(timeToBlockExpire / 1000) };
  }
}
