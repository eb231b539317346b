import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { createLogger, exitGracefullyOnSignals } from '@app/logging';
import { listenProblem, parseEnvOrExit } from '@app/config';
import type Redis from 'ioredis';
import { REDIS_CLIENT, RedisConnection, reconnecting, redisUnreachable } from '@app/redis';
import { NestPinoLogger } from '@app/logging/nest-pino-logger';
import { WorkerModule } from './worker.module';

/** The worker: a Nest application context (no HTTP) that consumes the inference queue. */
async function bootstrap(): Promise<void> {
  const logger = createLogger('worker');
  const env = parseEnvOrExit((message) => logger.fatal({ action: 'config.invalid' }, message));
  // One clear line (and exit 1) for the two common start-up mistakes, before Nest prints anything.
  const problem = (await redisUnreachable(RedisConnection.fromEnv(env))) ?? (await listenProblem('WORKER_HTTP_PORT', env.HOST, env.WORKER_HTTP_PORT));
  if (problem) {
    logger.fatal({ action: 'worker.cannot_start', redis: RedisConnection.fromEnv(env).describe(), port: env.WORKER_HTTP_PORT }, problem);
    process.exit(1);
  }
  // abortOnError false: a failed start (say, an evicting Redis) reaches the catch below: one fatal JSON line naming the cause, exit 1.
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(logger), { logger: new NestPinoLogger(logger), abortOnError: false });
  const redis = app.get<Redis>(REDIS_CLIENT);
  exitGracefullyOnSignals(app, logger, { graceMs: env.SHUTDOWN_GRACE_MS, redisUnreachable: () => reconnecting(redis) });
  logger.info({ action: 'worker.started' }, 'worker started');
}

bootstrap().catch((error) => {
  createLogger('worker').fatal({ action: 'worker.start_failed', err: error }, `worker failed to start: ${(error as Error).message}`);
  process.exit(1);
});
