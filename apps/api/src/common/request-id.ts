import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyRequest } from 'fastify';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** pino-http's id generator: honours a well-formed incoming X-Request-Id, else a UUID; echoed back to the client. */
export function generateRequestId(request: IncomingMessage, response: ServerResponse): string {
  const incoming = request.headers['x-request-id'];
  const id = typeof incoming === 'string' && SAFE_ID.test(incoming) ? incoming : randomUUID();
  response.setHeader('x-request-id', id);
  return id;
}

/** The id pino-http gave this request (the same id the worker logs for its job). */
export function requestIdOf(request: FastifyRequest): string {
  return (request.raw as { id?: string }).id ?? request.id;
}
