import type { RedisOptions } from 'ioredis';

/**
 * The connection fields a URL carries. A subset of ioredis' RedisOptions that also fits BullMQ's own
 * RedisOptions (since BullMQ 6 it no longer takes ioredis' type, whose retryStrategy may be null).
 */
export type RedisUrlOptions = Required<Pick<RedisOptions, 'host' | 'port' | 'db'>> & Pick<RedisOptions, 'username' | 'password' | 'tls'>;

/** ioredis options from a redis:// or rediss:// URL (user, password, host, port, /db). */
export function redisOptionsFromUrl(url: string): RedisUrlOptions {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error(`REDIS_URL must be redis:// or rediss://, got ${parsed.protocol}`);
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error(`REDIS_URL has an invalid database number: ${parsed.pathname}`);
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    db,
    tls: parsed.protocol === 'rediss:' ? {} : undefined,
  };
}
