import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppError } from '@app/contracts';

/**
 * How long a connection closed after a refusal keeps being read (its bytes thrown away) once the answer went
 * out, in ms. Closing a socket with unread bytes makes the kernel send a reset, and a client still sending its
 * body then loses the answer it had not read yet ("connection ended without an answer"). Web servers linger for
 * this reason (nginx `lingering_time`, Apache's lingering close); 2 s lets the answer reach the client.
 */
export const LINGER_MS = 2_000;

/**
 * Makes the close that follows this request's `connection: close` answer a lingering one: Node's HTTP server
 * ends such a connection with `socket.destroySoon()` (lib/_http_server.js, resOnFinish) right after the answer,
 * while it already discards the rest of the body (`req._dump()`). Here the write side is closed (FIN), the
 * reading goes on, and the socket is destroyed when the client closes or after LINGER_MS at the latest.
 */
export function lingerAfterAnswer(request: FastifyRequest): void {
  const socket = request.raw.socket as Socket & { destroySoon?: () => void };
  if (!socket || socket.destroyed) return;
  socket.destroySoon = () => {
    socket.end();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
}

/** A request that carries a body (declared length, or chunked). */
export function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}

/**
 * Sends an AppError from a Fastify hook (before Nest's routing, so before its exception filter) in the API's
 * error shape, with Retry-After when the error carries one. With `close`, the connection is closed (after lingering:
 * lingerAfterAnswer) instead of the unread body drained (an unauthenticated body is not worth reading); without, Node reads and discards the
 * body, so a client that reads the answer only after sending everything still gets it (a busy 503 it retries).
 */
export async function refuseBeforeBody(reply: FastifyReply, error: AppError, close: boolean): Promise<FastifyReply> {
  const retryAfter = error.details?.retryAfterSeconds;
  if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
  if (close) {
    void reply.header('connection', 'close');
    lingerAfterAnswer(reply.request);
  }
  await reply
    .status(error.httpStatus)
    .send({ error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) } });
  return reply;
}
