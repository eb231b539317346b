import type { INestApplicationContext } from '@nestjs/common';
import type { Logger } from 'pino';

/**
 * On SIGTERM/SIGINT: close the Nest app (every shutdown hook runs, in order) and exit 0 (or process.exitCode, when
 * the process set one before signalling itself: a worker's stall watchdog asks for a restart with 1); if that
 * takes longer than `graceMs`, log it and exit 1. Used instead of Nest's enableShutdownHooks, which re-raises the signal
 * after closing (so the process would not exit 0).
 */
export function exitGracefullyOnSignals(app: INestApplicationContext, logger: Logger, graceMs: number, beforeClose: () => void = () => undefined): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) return;
    closing = true;
    logger.info({ action: 'shutdown.started', signal, graceMs }, `${signal}: finishing in-flight work`);
    const started = Date.now();
    beforeClose();
    // Logs are written asynchronously: the last line is flushed before the process exits, or it may be lost.
    const exit = (code: number) => logger.flush(() => process.exit(code));
    setTimeout(() => {
      logger.error({ action: 'shutdown.timeout', graceMs }, 'graceful shutdown took too long; exiting');
      exit(1);
    }, graceMs).unref();
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
