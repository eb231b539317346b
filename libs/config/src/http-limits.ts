import type { IncomingMessage, Server, ServerOptions } from 'node:http';
import type { Socket } from 'node:net';
import type { Env } from './env.schema';

/** The HTTP time limits of one server, in ms (see HTTP_* in env.schema.ts for the defaults and their sources). */
export interface HttpLimits {
  /** Node's headersTimeout: the request head must arrive within this, else 408 and close. */
  headersTimeout: number;
  /** Node's requestTimeout: the whole request (head and body) must arrive within this, else 408 and close. */
  requestTimeout: number;
  /** Longest silence while the client owes bytes (and of a connection that sent nothing): the socket is closed. */
  idleTimeout: number;
  /** How long an idle keep-alive connection stays open. */
  keepAliveTimeout: number;
  /**
   * How often Node checks the two totals above (createServer's connectionsCheckingInterval, 30 s by default, which
   * would let a 1 s limit run 30 s): a tenth of the shorter one, between 100 ms and 30 s.
   */
  connectionsCheckingInterval: number;
}

export function httpLimits(env: Pick<Env, 'HTTP_HEADERS_TIMEOUT_MS' | 'HTTP_REQUEST_TIMEOUT_MS' | 'HTTP_IDLE_TIMEOUT_MS' | 'HTTP_KEEP_ALIVE_TIMEOUT_MS'>): HttpLimits {
  const shortest = Math.min(env.HTTP_HEADERS_TIMEOUT_MS, env.HTTP_REQUEST_TIMEOUT_MS);
  return {
    headersTimeout: env.HTTP_HEADERS_TIMEOUT_MS,
    requestTimeout: env.HTTP_REQUEST_TIMEOUT_MS,
    idleTimeout: env.HTTP_IDLE_TIMEOUT_MS,
    keepAliveTimeout: env.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.round(shortest / 10))),
  };
}

/** node:http createServer options for these limits (the idle limit is applied by enforceIdleTimeout). */
export function nodeServerOptions(limits: HttpLimits): ServerOptions {
  return {
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    connectionsCheckingInterval: limits.connectionsCheckingInterval,
  };
}

/**
 * The idle limit as the server's socket timeout, with one exception Node does not make: a request received
 * whole and being answered (waiting for its job, an event stream between heartbeats) is not "idle", however long
 * it waits; its own limits (REQUEST_WAIT_MS, FACE_WAIT_MS, SSE_MAX_MS) end it. A socket is closed when its timer
 * fires while the client owes bytes (head or body unfinished), before any request, between keep-alive requests,
 * or while the client has not read what was already sent (answers queued unsent). Node destroys a timed-out
 * socket by itself only while nobody listens to the server's 'timeout' event; this listener decides instead.
 */
export function enforceIdleTimeout(server: Server, idleTimeout: number): void {
  const current = new WeakMap<Socket, IncomingMessage>();
  server.on('request', (request: IncomingMessage, response) => {
    current.set(request.socket, request);
    response.once('close', () => current.get(request.socket) === request && current.delete(request.socket));
  });
  server.setTimeout(idleTimeout);
  server.on('timeout', (socket: Socket) => {
    const request = current.get(socket);
    if (request?.complete && socket.writableLength === 0) return;
    socket.destroy();
  });
}
