import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import pino from 'pino';
import { ApiModule } from './api.module';
import { createOpenApiDocument } from './swagger';

/**
 * Prints the OpenAPI document as JSON without starting anything: Nest's preview mode reads the controllers'
 * metadata and instantiates no provider, so no Redis is needed. `npm run openapi` writes it for the linter.
 */
async function printDocument(): Promise<void> {
  const app = await NestFactory.create(ApiModule.forRoot(pino({ level: 'silent' })), new FastifyAdapter(), { preview: true, logger: false });
  process.stdout.write(`${JSON.stringify(createOpenApiDocument(app), null, 2)}\n`);
  await app.close();
}

printDocument().catch((error) => {
  process.stderr.write(`cannot build the OpenAPI document: ${(error as Error).stack}\n`);
  process.exit(1);
});
