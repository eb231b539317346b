import { INestApplication } from '@nestjs/common';
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { DocumentBuilder, getSchemaPath, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { ErrorResponseDto } from './common/error.dto';
import { PUBLIC_EXTENSION } from './auth/api-keys';

/** The part of an operation this file edits. */
type OperationObject = { responses: Record<string, unknown>; security?: unknown[] };

/**
 * The OpenAPI document, generated from the controllers' decorators. Every operation needs an API key (either
 * scheme) unless its controller is @Public(), which the document states as `security: []`.
 */
export function createOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Image inference queue')
    .setDescription(
      'Images in over HTTP, one worker per job through a Redis (BullMQ) queue, ONNX models on the CPU. Every error is `{ error: { code, message } }`. ' +
        "With API_KEYS set, send your key as `x-api-key` or `Authorization: Bearer`; each key's tenant sees only its own images, results, jobs and faces.",
    )
    .setVersion('0.1.0')
    .setLicense('MIT', 'https://opensource.org/licenses/MIT')
    .addServer('/', 'this server')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'opaque API key', description: 'an API key (API_KEYS), as a bearer token (not a JWT)' })
    .addApiKey({ type: 'apiKey', in: 'header', name: 'x-api-key' }, 'api-key')
    .addSecurityRequirements('api-key')
    .addSecurityRequirements('bearer')
    .build();
  const document = SwaggerModule.createDocument(app, config, { extraModels: [ErrorResponseDto] });
  const errorBody = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: getSchemaPath(ErrorResponseDto) } } } });
  for (const operations of Object.values(document.paths)) {
    for (const operation of Object.values(operations) as OperationObject[]) {
      if (!operation || typeof operation !== 'object' || !('responses' in operation)) continue;
      if (PUBLIC_EXTENSION in operation) {
        operation.security = [];
        delete (operation as Record<string, unknown>)[PUBLIC_EXTENSION];
        continue;
      }
      // What the key guard and the rate limiter answer on every protected route.
      operation.responses['401'] ??= errorBody('UNAUTHORIZED: API_KEYS is set and the request has no valid key');
      operation.responses['429'] ??= errorBody('RATE_LIMITED: past RATE_LIMIT_MAX for this key (or address) and route; see Retry-After');
    }
  }
  return document;
}

/**
 * Swagger UI at /docs and the OpenAPI JSON at /docs/json. `/docs/` is sent to `/docs`: the page's relative asset
 * links resolve against the trailing slash to /docs/docs/…, which answer 404 (a blank page; newcomer, stop 32).
 */
export function setupSwagger(app: INestApplication): void {
  // A hook of that one route (registered by SwaggerModule below), not of every request.
  const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
  fastify.addHook('onRoute', (route) => {
    if (route.url !== '/docs/') return;
    const redirect: onRequestHookHandler = (request, reply) => void reply.redirect(`/docs${request.url.slice('/docs/'.length)}`, 301);
    route.onRequest = [redirect, ...[route.onRequest ?? []].flat()];
  });
  SwaggerModule.setup('docs', app, createOpenApiDocument(app), { jsonDocumentUrl: 'docs/json' });
}
