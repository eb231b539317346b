import { types } from 'node:util';

/**
 * Redis replies and client errors that mean "the store cannot take this now, try again shortly", with how
 * long to wait (seconds, for Retry-After). Everything else is a real error.
 *
 * Reply prefixes are Redis' own error codes: OOM (maxmemory reached under noeviction), LOADING (reading its
 * data after a restart), BUSY (a script runs past busy-reply-threshold), READONLY (connected to a replica, e.g.
 * right after a failover), MASTERDOWN (a replica lost its primary and serves no stale data), TRYAGAIN and
 * CLUSTERDOWN (Redis Cluster resharding or without quorum), MISCONF (writes refused after a failed snapshot),
 * NOREPLICAS (min-replicas-to-write not met), NOAUTH and WRONGPASS (our credentials refused: the password was
 * changed or the user disabled under a running service). Inside a script Redis reports them after `@user_script:<line>: `.
 */
/**
 * Redis refuses our credentials (NOAUTH, WRONGPASS): not a network fault, and not one that heals by itself unless the
 * password comes back; an operator has to act, so clients are told to wait as long as for a full Redis.
 */
const AUTH_FAILED = { reason: 'refuses the service\'s credentials (authentication failed)', retryAfterSeconds: 10 };

const REPLY_CODES: Record<string, { reason: string; retryAfterSeconds: number }> = {
  OOM: { reason: 'is out of memory', retryAfterSeconds: 10 },
  LOADING: { reason: 'is loading its data after a restart', retryAfterSeconds: 5 },
  BUSY: { reason: 'is busy running a script', retryAfterSeconds: 2 },
  READONLY: { reason: 'is a read-only replica (failover in progress?)', retryAfterSeconds: 2 },
  MASTERDOWN: { reason: 'is a replica that lost its primary', retryAfterSeconds: 2 },
  TRYAGAIN: { reason: 'is moving keys (cluster resharding)', retryAfterSeconds: 1 },
  CLUSTERDOWN: { reason: 'cluster is down', retryAfterSeconds: 2 },
  MISCONF: { reason: 'refuses writes (its last snapshot failed)', retryAfterSeconds: 10 },
  NOREPLICAS: { reason: 'has too few replicas to accept writes', retryAfterSeconds: 2 },
  NOAUTH: AUTH_FAILED,
  WRONGPASS: AUTH_FAILED,
};

const REPLY_CODE = new RegExp(`(?:^|@user_script: ?\\d+: )-?(${Object.keys(REPLY_CODES).join('|')}) `);

/**
 * ioredis Cluster's ways of saying the cluster is between two layouts: a failover or resharding under way, its
 * slot map stale (it followed MOVED/ASK up to maxRedirections and still found no live owner), or no node reachable
 * to read the map from.
 */
const CLUSTER_MOVING = /^(Too many Cluster redirections|Failed to refresh slots cache|None of startup nodes is available)/;

/**
 * Node's socket error codes for "no connection to that address" (refused, reset, unreachable, name not resolved,
 * e.g. a container's name while its container is down: EAI_AGAIN or ENOTFOUND).
 */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

/**
 * ioredis' and Node's ways of saying the connection is not there (no offline queue, retries exhausted, socket gone),
 * in an error's message: its phrases, or one of the codes above named in it.
 */
const CONNECTION_LOST = new RegExp(
  ["Stream isn't writeable", 'enableOfflineQueue', 'Connection is closed', 'Connection is lost', 'Reached the max retries per request', 'Command timed out', ...CONNECTION_CODES].join('|'),
);

/** ioredis' and BullMQ's error classes for a connection that is gone (BullMQ 6: ConnectionClosedError). */
const CONNECTION_ERROR_NAMES = new Set(['MaxRetriesPerRequestError', 'ConnectionClosedError']);

/** An Error, also one made in another realm (Node's own socket errors as a Jest test sees them). */
function isError(value: unknown): value is Error {
  return value instanceof Error || types.isNativeError(value);
}

/**
 * A connection that is not there, whatever the wording: by class, by Node's error code, or by message. A host name
 * with several addresses (`localhost`: ::1 and 127.0.0.1) that all refuse gives Node's AggregateError, whose
 * message is empty: its code is the first attempt's, and every attempt in `errors` must be a lost connection.
 */
function connectionLost(error: Error): boolean {
  if (CONNECTION_ERROR_NAMES.has(error.name) || CONNECTION_LOST.test(error.message)) return true;
  const code = (error as NodeJS.ErrnoException).code;
  const attempts = (error as { errors?: unknown }).errors;
  if (error.name === 'AggregateError' || Array.isArray(attempts)) {
    return Array.isArray(attempts) && attempts.length > 0 && attempts.every((attempt) => isError(attempt) && connectionLost(attempt));
  }
  return typeof code === 'string' && CONNECTION_CODES.has(code);
}

export interface TryLater {
  /** What Redis is going through, to finish "the queue store (Redis) …". */
  reason: string;
  retryAfterSeconds: number;
}

/**
 * What the error says about Redis' availability, or undefined when it is not a "try later" error. A transaction
 * refused as a whole (EXECABORT) is judged by the errors of the commands it queued (ioredis' previousErrors).
 */
export function redisTryLater(error: unknown): TryLater | undefined {
  if (!isError(error)) return undefined;
  const code = replyCode(error);
  if (code) return REPLY_CODES[code];
  if (CLUSTER_MOVING.test(error.message)) return { reason: 'cluster is failing over or moving slots', retryAfterSeconds: 2 };
  // ioredis answers "Stream isn't writeable…" for commands sent while it reconnects, whatever keeps it from
  // connecting: when that is Redis refusing our password (seen on a tracked connection), say so.
  if (connectionLost(error)) return authFailing.size > 0 ? AUTH_FAILED : { reason: 'is unreachable', retryAfterSeconds: 2 };
  return undefined;
}

/** Whether Redis refused our credentials: NOAUTH (none sent, one required) or WRONGPASS (wrong password or disabled user). */
export function redisAuthFailed(error: unknown): boolean {
  if (!isError(error)) return false;
  const code = replyCode(error);
  return code === 'NOAUTH' || code === 'WRONGPASS';
}

/** Connections whose last connection attempt Redis refused for its credentials (see trackAuthFailures). */
const authFailing = new Set<object>();

/** What trackAuthFailures listens to: an ioredis client or Cluster. */
export interface ConnectionEvents {
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'ready' | 'end', listener: () => void): unknown;
}

/**
 * Follows `client`'s connection: while its last connection error is NOAUTH/WRONGPASS (and until it is ready again
 * or ends), every "no connection" error of this process (redisTryLater) is reported as an authentication failure
 * rather than "unreachable". A password changed under a running service (CONFIG SET requirepass, ACL SETUSER) leaves
 * open connections authenticated; each one that reconnects then fails AUTH/HELLO, and ioredis keeps reconnecting, so
 * its commands fail as if Redis were away. One process uses one set of credentials, so one refusal speaks for all.
 */
export function trackAuthFailures(client: ConnectionEvents): void {
  client.on('error', (error: Error) => (redisAuthFailed(error) ? authFailing.add(client) : authFailing.delete(client)));
  client.on('ready', () => authFailing.delete(client));
  client.on('end', () => authFailing.delete(client));
}

/**
 * Whether Redis refused the command because it is full (OOM: maxmemory reached under noeviction), directly, from
 * inside a script or for a queued command of a transaction. Such a Redis still answers reads and commands that
 * free memory (DEL, UNLINK, HDEL, ZREM, SREM, XDEL, EXPIRE…): only commands that may grow memory are refused.
 */
export function redisOutOfMemory(error: unknown): boolean {
  return isError(error) && replyCode(error) === 'OOM';
}

/** The "try later" reply code of `error` (see REPLY_CODES), or of the first queued command of a refused transaction. */
function replyCode(error: Error): string | undefined {
  const reply = REPLY_CODE.exec(error.message);
  if (reply) return reply[1];
  const queued = (error as { previousErrors?: unknown }).previousErrors;
  if (error.message.startsWith('EXECABORT') && Array.isArray(queued)) {
    return queued.map((one) => (isError(one) ? replyCode(one) : undefined)).find(Boolean);
  }
  return undefined;
}

/** The sentence a client reads in a 503 caused by `tryLater` (the same on every route). */
export function tryLaterMessage(tryLater: TryLater): string {
  return `the queue store (Redis) ${tryLater.reason}; try again in ${tryLater.retryAfterSeconds} s`;
}
