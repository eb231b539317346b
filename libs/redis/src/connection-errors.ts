import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { LogThrottle } from '@app/logging/log-throttle';
import { redisAuthFailed, redisTryLater, trackAuthFailures } from './try-later';

/** One `redis.error` line per this many ms at most while the same error repeats (ioredis retries every ~50–2000 ms). */
export const REDIS_ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Logs the connection errors of `client` as structured `redis.error` warnings: the first at once, then at most
 * one line per REDIS_ERROR_LOG_INTERVAL_MS while errors keep coming, counting those not written
 * (`suppressed`). Without a listener ioredis writes "[ioredis] Unhandled error event: …" with a stack to stderr
 * on every reconnect attempt, outside the JSON log and without the action or service fields. Commands still
 * fail on their own (503 on the API's request path); this only reports the connection.
 *
 * Redis refusing our credentials (NOAUTH, WRONGPASS: its password changed under the running service) is no outage
 * and does not end by itself: it is its own `redis.auth_failed` error line, naming the fix, and the connection is
 * tracked (trackAuthFailures) so the 503s it causes say "authentication failed" instead of "unreachable".
 */
export function logConnectionErrors(client: Redis, logger: Logger, redis: string, intervalMs = REDIS_ERROR_LOG_INTERVAL_MS): void {
  const throttle = new LogThrottle(intervalMs);
  trackAuthFailures(client);
  client.on('error', (error: Error) => {
    const suppressed = throttle.pass(error.message);
    if (suppressed === undefined) return;
    if (redisAuthFailed(error)) {
      return void logger.error(
        { action: 'redis.auth_failed', redis, err: { type: error.name, message: error.message }, suppressed },
        `Redis refused this service's credentials (${error.message.split(' ')[0]}): its password was changed or the user disabled; set the current one in REDIS_URL (or REDIS_PASSWORD) and restart. Retrying meanwhile`,
      );
    }
    logger.warn({ action: 'redis.error', redis, err: { type: error.name, message: error.message, code: (error as NodeJS.ErrnoException).code }, suppressed }, `Redis connection error: ${error.message}`);
  });
}

/** What emits BullMQ's `error` event: a Queue or a QueueEvents. */
export interface ErrorEmitter {
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/**
 * Logs the `error` events of a BullMQ Queue or QueueEvents: those saying Redis is unavailable (redisTryLater) as one
 * `<action>` warning per `intervalMs` with the number held back (`repeatsSinceLast`), others at once at
 * `otherLevel`. A Queue without a listener prints every connection error with console.error, a multi-line dump on
 * stderr outside the JSON log (nine per 10 s outage); a QueueEvents without throttling wrote a warning per retry.
 */
export function logQueueErrors(emitter: ErrorEmitter, logger: Logger, options: { action: string; what: string; otherLevel?: 'warn' | 'error'; intervalMs?: number }): void {
  const throttle = new LogThrottle(options.intervalMs ?? REDIS_ERROR_LOG_INTERVAL_MS);
  emitter.on('error', (error: Error) => {
    const tryLater = redisTryLater(error);
    if (!tryLater) return void logger[options.otherLevel ?? 'error']({ action: options.action, err: error }, `${options.what} error: ${error.message}`);
    const repeatsSinceLast = throttle.pass(tryLater.reason);
    if (repeatsSinceLast === undefined) return;
    logger.warn({ action: options.action, reason: tryLater.reason, repeatsSinceLast, err: error }, `${options.what}: Redis ${tryLater.reason}; it keeps trying`);
  });
}
