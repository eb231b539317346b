import type { IncomingMessage } from 'node:http';

/** How often a body still arriving is checked against the minimum rate (ms). */
const CHECK_EVERY_MS = 1000;

const TIMEOUT_ANSWER = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n' +
  JSON.stringify({ error: { code: 'REQUEST_TIMEOUT', message: 'the request body arrived too slowly (UPLOAD_MIN_BYTES_PER_SECOND)' } });

/**
 * Holds a request's body to a minimum average rate, as Apache's mod_reqtimeout `MinRate` does: after `graceMs`
 * the bytes received on its connection must keep up with `minBytesPerSecond` × (time since the grace ended),
 * checked every second until the body is complete. A body that falls behind is answered 408 (written straight
 * to the socket, as Node answers its own request timeout) and its connection closed; `onTooSlow` is told
 * (bytes received, ms since the watch began). `minBytesPerSecond` 0 turns the watch off. Counts the socket's
 * bytes (`bytesRead`), so the body's framing (chunked, multipart) counts as received.
 */
export function watchBodyRate(request: IncomingMessage, minBytesPerSecond: number, graceMs: number, onTooSlow: (received: number, elapsedMs: number) => void): void {
  const socket = request.socket;
  if (minBytesPerSecond <= 0 || request.complete || !socket || socket.destroyed) return;
  const started = Date.now();
  const startBytes = socket.bytesRead;
  const timer = setInterval(() => {
    const elapsedMs = Date.now() - started;
    if (elapsedMs <= graceMs) return;
    const received = socket.bytesRead - startBytes;
    if (received >= (minBytesPerSecond * (elapsedMs - graceMs)) / 1000) return;
    stop();
    onTooSlow(received, elapsedMs);
    if (!socket.destroyed) socket.end(TIMEOUT_ANSWER);
    setTimeout(() => socket.destroy(), 1000).unref();
  }, CHECK_EVERY_MS);
  timer.unref();
  const stop = () => clearInterval(timer);
  request.once('end', stop);
  request.once('close', stop);
  socket.once('close', stop);
}
