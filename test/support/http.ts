import { setTimeout as sleep } from 'node:timers/promises';

/** Small helpers over Node's fetch for the e2e tests (loopback only). */
export interface HttpResult<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export async function request<T = any>(url: string, init?: RequestInit): Promise<HttpResult<T>> {
  if (!/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)(:\d+)?\//.test(url)) throw new Error(`tests only talk to loopback, not ${url}`);
  const response = await fetchOnce(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, headers: response.headers, body: body as T };
}

/**
 * fetch, once more for a GET or HEAD that fails with a reset connection: the test apps listen on ports freed a
 * moment ago, and fetch's connection pool may still hold a connection to an earlier process on the same port.
 */
async function fetchOnce(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    const method = (init?.method ?? 'GET').toUpperCase();
    const reset = (error as { cause?: { code?: string } }).cause?.code === 'ECONNRESET';
    if (!reset || (method !== 'GET' && method !== 'HEAD')) throw error;
    return fetch(url, init);
  }
}

export function multipart(fields: Record<string, string | { bytes: Buffer; filename: string; type?: string }>): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([value.bytes], { type: value.type ?? 'application/octet-stream' }), value.filename);
  }
  return form;
}

export function postImage(url: string, bytes: Buffer, filename = 'image.jpg'): Promise<HttpResult> {
  return request(url, { method: 'POST', body: multipart({ image: { bytes, filename } }) });
}

export interface RawResponse {
  status: number;
  /** The response head as sent (status line and headers), to look for injected headers. */
  head: string;
  body: any;
}

/**
 * Hand-written HTTP/1.1 over a socket to 127.0.0.1, for what fetch refuses to send: control characters in
 * headers, unnormalised paths, and huge bodies the server answers before reading (writing stops as soon as
 * the answer starts; a reset after the answer is expected and ignored).
 */
export function rawHttp(port: number, head: string, body?: Buffer, timeoutMs = 30_000): Promise<RawResponse> {
  const { connect } = require('node:net') as typeof import('node:net');
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let answered = false;
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(received).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      if (split < 0) return reject(error ?? new Error(`no HTTP answer: ${JSON.stringify(text.slice(0, 200))}`));
      const responseHead = text.slice(0, split);
      let parsed: unknown = text.slice(split + 4);
      try {
        parsed = JSON.parse(parsed as string);
      } catch {
        // not JSON
      }
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(responseHead)?.[1] ?? 0), head: responseHead, body: parsed });
    };
    socket.on('data', (data) => {
      answered = true;
      received.push(data);
      const text = Buffer.concat(received).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split))?.[1];
      if (split >= 0 && length !== undefined && Buffer.byteLength(text.slice(split + 4), 'latin1') >= Number(length)) finish();
    });
    socket.on('end', () => finish());
    socket.on('error', (error) => (answered ? finish() : finish(error)));
    socket.write(head.endsWith('\r\n\r\n') ? head : `${head}\r\n\r\n`);
    if (!body) return;
    // Paced, so an early answer is read before the server closes on the rest of the body (a close with
    // unread data sends a reset, which can discard an answer the client has not read yet).
    // It also waits a moment after the head, as curl does for large bodies: a server refusing by Content-Length answers at once.
    void (async () => {
      await sleep(100);
      for (let offset = 0; offset < body.length && !answered && !socket.destroyed; offset += 262_144) {
        if (!socket.write(body.subarray(offset, offset + 262_144))) await new Promise((resolve) => socket.once('drain', resolve));
        await sleep(5);
      }
    })();
  });
}

export interface HeldConnection {
  /** Status of the server's answer, 0 when it sent none. */
  status: number;
  /** When the server ended the connection (ms after connecting); undefined when it was still open at `maxMs`. */
  closedByServerAfterMs?: number;
  /** Bytes written before the server ended it. */
  bytesSent: number;
  /** Everything the server sent. */
  received: string;
}

/**
 * A connection to 127.0.0.1 that writes `first`, then `drip` one byte every `everyMs` (a slow client; without
 * `drip`, a silent one), and watches what the server does. Closed here at `maxMs` at the latest.
 */
export function holdConnection(port: number, first: string | Buffer, options: { drip?: Buffer; everyMs?: number; maxMs: number; chunkBytes?: number }): Promise<HeldConnection> {
  const { connect } = require('node:net') as typeof import('node:net');
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let bytesSent = 0;
    let dripTimer: NodeJS.Timeout | undefined;
    const finish = (closedByServer: boolean) => {
      clearTimeout(limit);
      clearInterval(dripTimer);
      socket.destroy();
      const text = Buffer.concat(received).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0), closedByServerAfterMs: closedByServer ? Date.now() - started : undefined, bytesSent, received: text });
    };
    const limit = setTimeout(() => finish(false), options.maxMs);
    socket.on('data', (data) => received.push(data));
    socket.on('close', () => finish(true));
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      if (first.length > 0) socket.write(first, () => (bytesSent += Buffer.byteLength(first)));
      let offset = 0;
      if (options.drip) {
        dripTimer = setInterval(() => {
          if (offset >= options.drip!.length || socket.destroyed) return clearInterval(dripTimer);
          const chunk = options.drip!.subarray(offset, (offset += options.chunkBytes ?? 1));
          socket.write(chunk, () => (bytesSent += chunk.length));
        }, options.everyMs ?? 1000);
      }
    });
  });
}
