import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Fastify's request-id generator: a well-formed incoming X-Request-Id, else a UUID (no header injection). */
export function generateRequestId(request: IncomingMessage): string {
  const incoming = request.headers['x-request-id'];
  return typeof incoming === 'string' && SAFE_ID.test(incoming) ? incoming : randomUUID();
}

/** pino-http reuses Fastify's id (middie copies it onto the raw request). */
export function reuseRequestId(request: IncomingMessage): string {
  return (request as { id?: string }).id ?? generateRequestId(request);
}

/** The id of this request: the same id the worker logs for its job. */
export function requestIdOf(request: FastifyRequest): string {
  return request.id;
}
