import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppError } from '@app/contracts';

/** A request that carries a body (declared length, or chunked). */
export function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}

/**
 * Sends an AppError from a Fastify hook (before Nest's routing, so before its exception filter) in the API's
 * error shape, with Retry-After when the error carries one. With `close`, the connection is closed instead of
 * the unread body drained (an unauthenticated body is not worth reading); without, Node reads and discards the
 * body, so a client that reads the answer only after sending everything still gets it (a busy 503 it retries).
 */
export async function refuseBeforeBody(reply: FastifyReply, error: AppError, close: boolean): Promise<FastifyReply> {
  const retryAfter = error.details?.retryAfterSeconds;
  if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
  if (close) void reply.header('connection', 'close');
  await reply
    .status(error.httpStatus)
    .send({ error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) } });
  return reply;
}
