import type { INestApplicationContext } from '@nestjs/common';
import type { Logger } from 'pino';

export interface GracefulShutdownOptions {
  /** The longest the close may take, in ms (SHUTDOWN_GRACE_MS); then log it and exit 1. */
  graceMs: number;
  /** Runs first, synchronously, when the signal arrives (the API stops keeping connections alive). */
  beforeClose?: () => void;
  /**
   * True while the process cannot reach Redis. Work in flight can only finish through Redis (a worker records its
   * result there, an API request learns its answer from there), so a close that finds Redis unreachable for
   * `REDIS_DOWN_EXIT_MS` in a row stops waiting and exits 1: the jobs stay in Redis, and any worker retries them once
   * it is back (at-least-once). Without this, BullMQ's and ioredis' close wait on a reconnect until `graceMs` ends.
   */
  redisUnreachable?: () => boolean;
}

/**
 * How long Redis must stay unreachable during a close before the process gives up waiting on it, in ms: longer
 * than a Sentinel failover's usual switch (about a second), so a blip does not cut work that was about to finish.
 */
export const REDIS_DOWN_EXIT_MS = 2_000;
const REDIS_CHECK_MS = 250;

/**
 * On SIGTERM/SIGINT: close the Nest app (every shutdown hook runs, in order) and exit 0 (or process.exitCode, when
 * the process set one before signalling itself: a worker's stall watchdog asks for a restart with 1); if that
 * takes longer than `graceMs`, or Redis stays unreachable (see `redisUnreachable`), log it and exit 1. Used instead
 * of Nest's enableShutdownHooks, which re-raises the signal after closing (so the process would not exit 0).
 */
export function exitGracefullyOnSignals(app: INestApplicationContext, logger: Logger, options: GracefulShutdownOptions): void {
  const { graceMs, beforeClose = () => undefined, redisUnreachable } = options;
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) return;
    closing = true;
    logger.info({ action: 'shutdown.started', signal, graceMs }, `${signal}: finishing in-flight work`);
    const started = Date.now();
    beforeClose();
    let exited = false;
    // Logs are written asynchronously: the last line is flushed before the process exits, or it may be lost.
    const exit = (code: number) => {
      if (exited) return;
      exited = true;
      logger.flush(() => process.exit(code));
    };
    setTimeout(() => {
      logger.error({ action: 'shutdown.timeout', graceMs }, 'graceful shutdown took too long; exiting');
      exit(1);
    }, graceMs).unref();
    if (redisUnreachable) {
      let unreachableSince: number | undefined;
      setInterval(() => {
        if (!redisUnreachable()) return void (unreachableSince = undefined);
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince < REDIS_DOWN_EXIT_MS) return;
        logger.error(
          { action: 'shutdown.redis_unreachable', ms: Date.now() - started },
          'Redis is unreachable, so work in flight cannot finish here; exiting without waiting (its jobs stay in Redis and are retried once it is back)',
        );
        exit(1);
      }, REDIS_CHECK_MS).unref();
    }
    app.close().then(
      () => {
        logger.info({ action: 'shutdown.completed', ms: Date.now() - started }, 'stopped cleanly');
        exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
      },
      (error) => {
        logger.error({ action: 'shutdown.failed', err: error }, 'error while shutting down');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
