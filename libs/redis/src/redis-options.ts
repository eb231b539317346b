import { parseRedisUrl, RedisUrlOptions } from '@app/config/redis-url';

export type { RedisUrlOptions } from '@app/config/redis-url';

/**
 * ioredis options for every connection of both apps (ours and BullMQ's): REDIS_URL as parseRedisUrl reads it
 * (validated at start), plus a reconnect when Redis answers READONLY, the sign that the address now leads to a
 * replica (a failover moved the primary behind a DNS name, as managed services do): the new connection finds
 * the new primary. The command itself fails (503 + Retry-After on the API) rather than being sent again.
 */
export function redisOptionsFromUrl(url: string): RedisUrlOptions & { reconnectOnError: (error: Error) => boolean } {
  return { ...parseRedisUrl(url), reconnectOnError: (error) => error.message.startsWith('READONLY') };
}
