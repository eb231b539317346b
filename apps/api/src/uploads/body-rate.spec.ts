import { Agent, createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { watchBodyRate } from './body-rate';

describe('watchBodyRate', () => {
  it('leaves nothing behind on a keep-alive connection once each body is in (it held every request alive)', async () => {
    const sockets = new Set<Socket>();
    const closeListeners: number[] = [];
    const server = createServer((request: IncomingMessage, response) => {
      sockets.add(request.socket);
      watchBodyRate(request, { expectedBytes: 1000, contended: () => false, finishWithinMs: 10_000, graceMs: 1000, onTooSlow: () => undefined });
      request.resume();
      request.on('end', () => {
        closeListeners.push(request.socket.listenerCount('close'));
        response.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 30; i++) {
        await new Promise<void>((resolve, reject) => {
          const sent = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', agent, headers: { 'content-length': '1000' } }, (answer) => {
            answer.resume();
            answer.on('end', resolve);
          });
          sent.on('error', reject);
          sent.end(Buffer.alloc(1000));
        });
      }
    } finally {
      agent.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
    expect(sockets.size).toBe(1); // one connection carried all 30 requests
    // Node's own listeners only: the same after the 30th request as after the first (it grew by one per request).
    expect(closeListeners[29]).toBe(closeListeners[0]);
  });

  it('cuts a body that cannot finish within the wait while others wait for budget, and only then', async () => {
    let contended = false;
    const cut: number[] = [];
    const server = createServer((request: IncomingMessage) => {
      watchBodyRate(request, { expectedBytes: 1_000_000, contended: () => contended, finishWithinMs: 1000, graceMs: 200, onTooSlow: (received) => cut.push(received) });
      request.resume();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const answer = new Promise<string>((resolve) => {
      const sent = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { 'content-length': '1000000' } }, (response) => resolve(String(response.statusCode)));
      sent.on('error', (error) => resolve(error.message));
      sent.write(Buffer.alloc(100));
    });
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(cut).toEqual([]); // slow, but nobody waits
    contended = true;
    expect(await answer).toBe('408');
    expect(cut).toHaveLength(1);
    await new Promise((resolve) => server.close(resolve));
  });
});
