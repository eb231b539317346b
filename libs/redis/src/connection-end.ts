import type Redis from 'ioredis';

/** Clients being closed on purpose (app shutdown): their 'end' is expected. */
const closingOnPurpose = new WeakSet<Redis>();

/** Marks `client` as closed on purpose, so its 'end' does not count as lost (call before quit/disconnect). */
export function closingClient(client: Redis): void {
  closingOnPurpose.add(client);
}

/**
 * Calls `onLost` once if `client` ends for good without being closed on purpose. ioredis emits 'end' when it
 * will not reconnect any more; every command then fails with "Connection is closed." for the life of the process.
 * Seen after back-to-back Sentinel failovers (ioredis' failover detector closing a connection while its
 * SentinelConnector was still connecting): the worker stayed alive, failing its heartbeat and every job, with
 * nothing to restart it. The caller exits for its supervisor to start a fresh process.
 */
export function onConnectionLost(client: Redis, onLost: () => void): void {
  client.once('end', () => {
    if (!closingOnPurpose.has(client)) onLost();
  });
}

/**
 * True while `client` has lost Redis and is trying to reach it again. False when connected, and after it was closed
 * (its status is then 'end'): a shutdown that has already quit the connection is not waiting on Redis.
 */
export function reconnecting(client: Redis): boolean {
  return client.status === 'connecting' || client.status === 'reconnecting' || client.status === 'close';
}
