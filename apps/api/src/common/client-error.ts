import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
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
