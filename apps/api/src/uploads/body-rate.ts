import type { IncomingMessage } from 'node:http';

/** How often a body still arriving is looked at while others wait for budget (ms). */
const CHECK_EVERY_MS = 250;

const TIMEOUT_ANSWER = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n' +
  JSON.stringify({ error: { code: 'REQUEST_TIMEOUT', message: 'the request body arrives too slowly to finish within 60 s while other uploads wait for room' } });

/**
 * While others wait for upload budget, a body holding some must be on course to finish within this (ms). Long
 * enough that a real upload is never cut for a slow moment (a 10 MiB photo needs 175 KB/s; nginx gives
 * client_body_timeout 60 s between two reads), short enough that holding 32 MiB costs an attacker sending 32 MiB a
 * minute. (UPLOAD_BUDGET_WAIT_MS, 10 s, was tried: CI's 40 concurrent 9.5 MB uploads from a starved client had 3 cut.)
 */
export const SLOW_BODY_FINISH_MS = 60_000;

export interface BodyRateWatch {
  /** Bytes the body is expected to have (its Content-Length, else what it reserved). */
  expectedBytes: number;
  /** True while other requests wait for upload budget. */
  contended: () => boolean;
  /** While others wait, a holder must be on course to finish within this (ms; SLOW_BODY_FINISH_MS in the API). */
  finishWithinMs: number;
  /** Time a body gets before its rate is judged (UPLOAD_RATE_GRACE_MS). */
  graceMs: number;
  /** Told (bytes received, ms since the watch began) when the body is cut. */
  onTooSlow: (received: number, elapsedMs: number) => void;
}

/**
 * Cuts a body that holds upload budget it cannot give back in time, but only while other requests wait for that
 * budget: after `graceMs`, a body whose remaining bytes would take longer than `finishWithinMs` at its average rate so far
 * (or that has sent nothing) is answered 408, written straight to the socket as Node answers its own request
 * timeout, and its connection closed. Uncontended, a slow body is left alone (a phone on a poor uplink loses
 * nothing for being slow); HTTP_REQUEST_TIMEOUT_MS still ends it. Why: a reservation is made for the declared
 * length before the body arrives, so a few clients declaring 32 MiB and sending slowly (a byte now and then, or
 * just above any fixed minimum rate) held every other client's upload to 503 (red-team, twice). Counts the
 * socket's bytes (`bytesRead`), so the body's framing counts as received.
 */
export function watchBodyRate(request: IncomingMessage, watch: BodyRateWatch): void {
  const socket = request.socket;
  if (request.complete || !socket || socket.destroyed) return;
  const started = Date.now();
  const startBytes = socket.bytesRead;
  const timer = setInterval(() => {
    const elapsedMs = Date.now() - started;
    if (elapsedMs < watch.graceMs || !watch.contended()) return;
    const received = socket.bytesRead - startBytes;
    const remaining = watch.expectedBytes - received;
    if (remaining <= 0) return;
    const bytesPerMs = received / elapsedMs;
    if (bytesPerMs > 0 && remaining / bytesPerMs <= watch.finishWithinMs) return;
    stop();
    watch.onTooSlow(received, elapsedMs);
    if (!socket.destroyed) socket.end(TIMEOUT_ANSWER);
    setTimeout(() => socket.destroy(), 1000).unref();
  }, CHECK_EVERY_MS);
  timer.unref();
  // Every listener goes with the watch: a keep-alive socket lives for many requests, and a listener left on it
  // kept each request (its body included) alive until the connection closed (~80 KB per request, seen as API RSS
  // growing by 240 MB over 3,000 requests in the memory bench).
  const stop = () => {
    clearInterval(timer);
    request.off('end', stop);
    request.off('close', stop);
    socket.off('close', stop);
  };
  request.once('end', stop);
  request.once('close', stop);
  socket.once('close', stop);
}
