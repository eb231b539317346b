import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Fastify's request-id generator: always a server-made UUID, so no client can forge or collide with another
 * request's id in the logs. A client's own X-Request-Id is kept beside it (clientRequestIdOf).
 */
export function generateRequestId(): string {
  return randomUUID();
}

/** The client's X-Request-Id when it is well-formed (no header or log injection), else undefined. */
export function clientRequestIdOf(request: IncomingMessage | FastifyRequest): string | undefined {
  const incoming = request.headers['x-request-id'];
  return typeof incoming === 'string' && SAFE_ID.test(incoming) ? incoming : undefined;
}

/** pino-http reuses Fastify's id (middie copies it onto the raw request). */
export function reuseRequestId(request: IncomingMessage): string {
  return (request as { id?: string }).id ?? generateRequestId();
}

/** The id of this request: the same id the worker logs for its job. */
export function requestIdOf(request: FastifyRequest): string {
  return request.id;
}
