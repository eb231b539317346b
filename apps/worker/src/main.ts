import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { createLogger, exitGracefullyOnSignals } from '@app/logging';
import { parseEnv } from '@app/config';
import { NestPinoLogger } from '@app/logging/nest-pino-logger';
import { WorkerModule } from './worker.module';

/** The worker: a Nest application context (no HTTP) that consumes the inference queue. */
async function bootstrap(): Promise<void> {
  const logger = createLogger('worker');
  let env;
  try {
    env = parseEnv(process.env);
  } catch (error) {
    logger.fatal({ action: 'config.invalid' }, (error as Error).message);
    process.exit(2);
  }
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(logger), { logger: new NestPinoLogger(logger) });
  exitGracefullyOnSignals(app, logger, env.SHUTDOWN_GRACE_MS);
  logger.info({ action: 'worker.started' }, 'worker started');
}

bootstrap().catch((error) => {
  createLogger('worker').fatal({ action: 'worker.start_failed', err: error }, `worker failed to start: ${(error as Error).message}`);
  process.exit(1);
});
