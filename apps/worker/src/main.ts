import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { createLogger, exitGracefullyOnSignals } from '@app/logging';
import { parseEnvOrExit } from '@app/config';
import { NestPinoLogger } from '@app/logging/nest-pino-logger';
import { WorkerModule } from './worker.module';

/** The worker: a Nest application context (no HTTP) that consumes the inference queue. */
async function bootstrap(): Promise<void> {
  const logger = createLogger('worker');
  const env = parseEnvOrExit((message) => logger.fatal({ action: 'config.invalid' }, message));
  // abortOnError false: a failed start reaches the catch below (one fatal JSON line naming the cause, exit 1).
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(logger), { logger: new NestPinoLogger(logger), abortOnError: false });
  exitGracefullyOnSignals(app, logger, env.SHUTDOWN_GRACE_MS);
  logger.info({ action: 'worker.started' }, 'worker started');
}

bootstrap().catch((error) => {
  createLogger('worker').fatal({ action: 'worker.start_failed', err: error }, `worker failed to start: ${(error as Error).message}`);
  process.exit(1);
});
