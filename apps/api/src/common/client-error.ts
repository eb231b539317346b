import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ErrorCode } from '@app/contracts';

/** Node's parser errors that have an answer of their own; anything else malformed is 400. */
const PARSER_ERRORS: Record<string, { status: number; code: ErrorCode; message: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, code: ErrorCode.BadRequest, message: 'the request was not received in time' },
  HPE_HEADER_OVERFLOW: { status: 431, code: ErrorCode.BadRequest, message: 'the request headers are larger than allowed' },
};

/**
 * Fastify's clientErrorHandler: requests Node's HTTP parser refuses before Fastify sees them (headers too
 * large, a request not received in time, malformed HTTP) are answered in the API's error shape, not Fastify's,
 * and the connection is closed (as Node and Fastify do).
 */
export function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const known = PARSER_ERRORS[error.code ?? ''] ?? { status: 400, code: ErrorCode.BadRequest, message: 'malformed HTTP request' };
  const body = JSON.stringify({ error: { code: known.code, message: known.message } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${known.status} ${STATUS_CODES[known.status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(error);
}

/** Fastify's default path-parameter limit (maxParamLength): a longer segment never reaches a route. */
const MAX_PATH_PARAMETER = 100;

/**
 * Fastify's frameworkErrors: a URL its router refuses before any route or hook runs (a malformed %-escape:
 * FST_ERR_BAD_URL; a path segment over MAX_PATH_PARAMETER characters: FST_ERR_MAX_PARAM_LENGTH). Answered in
 * the API's error shape with the request id, without echoing the URL (Fastify's own answer quoted it whole: a
 * 5 KB path came back as a 5 KB body; red team, stop 32).
 */
export function frameworkErrorHandler(logger: Logger): (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, request, reply) => {
    const tooLong = error.code === 'FST_ERR_MAX_PARAM_LENGTH';
    const status = tooLong ? 414 : 400;
    const message = tooLong ? `a path segment is longer than ${MAX_PATH_PARAMETER} characters` : 'the URL path is not valid (a malformed %-escape)';
    logger.info({ action: 'http.rejected', requestId: request.id, status, code: ErrorCode.BadRequest, method: request.method, fastifyCode: error.code }, message);
    void reply.code(status).header('x-request-id', request.id).send({ error: { code: ErrorCode.BadRequest, message } });
  };
}
