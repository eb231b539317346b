import { LoggerService } from '@nestjs/common';
import type { Logger } from 'pino';

/** Routes Nest's own framework messages into the same pino JSON stream. */
export class NestPinoLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}

  log(message: unknown, context?: string): void {
    this.logger.debug({ action: 'nest.log', context }, String(message));
  }

  error(message: unknown, trace?: string, context?: string): void {
    this.logger.error({ action: 'nest.error', context, trace }, String(message));
  }

  warn(message: unknown, context?: string): void {
    this.logger.warn({ action: 'nest.warn', context }, String(message));
  }

  debug(message: unknown, context?: string): void {
    this.logger.debug({ action: 'nest.debug', context }, String(message));
  }

  verbose(message: unknown, context?: string): void {
    this.logger.trace({ action: 'nest.verbose', context }, String(message));
  }
}
