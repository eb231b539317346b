import { Agent, request } from 'node:http';

/**
 * The benches' HTTP client: node:http with keep-alive connections (one per closed-loop client, reused), body drained.
 * Not fetch: undici's fetch cost the bench process 0.9–1.0 ms of CPU per request against 0.2 ms for this
 * (measured per thread from /proc at 32 clients, 2026-12-01), and the load generator shares the machine's cores
 * with the service it measures (not with the in-process reference), so a dearer client understated the service's
 * throughput by about a tenth. Its own CPU per request is printed beside the bill.
 */
const agent = new Agent({ keepAlive: true });

/** POSTs `body` to `url` (http://host:port/path?query) as `type`; resolves with the status once the answer is read. */
export function post(url: string, type: string, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = request(url, { method: 'POST', agent, headers: { 'content-type': type, 'content-length': body.length } }, (response) => {
      response.on('data', () => undefined);
      response.on('end', () => resolve(response.statusCode ?? 0));
      response.on('error', reject);
    });
    call.on('error', reject);
    call.end(body);
  });
}
