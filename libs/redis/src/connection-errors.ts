import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { LogThrottle } from '@app/logging/log-throttle';

/** One `redis.error` line per this many ms at most while the same error repeats (ioredis retries every ~50–2000 ms). */
export const REDIS_ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Logs the connection errors of `client` as structured `redis.error` warnings: the first at once, then at most
 * one line per REDIS_ERROR_LOG_INTERVAL_MS while errors keep coming, counting those not written
 * (`suppressed`). Without a listener ioredis writes "[ioredis] Unhandled error event: …" with a stack to stderr
 * on every reconnect attempt, outside the JSON log and without the action or service fields. Commands still
 * fail on their own (503 on the API's request path); this only reports the connection.
 */
export function logConnectionErrors(client: Redis, logger: Logger, redis: string, intervalMs = REDIS_ERROR_LOG_INTERVAL_MS): void {
  const throttle = new LogThrottle(intervalMs);
  client.on('error', (error: Error) => {
    const suppressed = throttle.pass(error.message);
    if (suppressed === undefined) return;
    logger.warn({ action: 'redis.error', redis, err: { type: error.name, message: error.message, code: (error as NodeJS.ErrnoException).code }, suppressed }, `Redis connection error: ${error.message}`);
  });
}
