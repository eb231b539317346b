import { createServer } from 'node:net';
import Redis from 'ioredis';
import pino from 'pino';
import { logConnectionErrors } from './connection-errors';

/** A loopback port nobody listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('logConnectionErrors', () => {
  it('writes refused connections as throttled JSON warnings, never as ioredis "Unhandled error event" text', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const stderr: string[] = [];
    const consoleError = jest.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void stderr.push(args.join(' ')));
    const port = await deadPort();
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 20 });
    logConnectionErrors(client, logger, `127.0.0.1:${port}`, 60_000);
    try {
      await client.connect().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 500)); // ~20 reconnect attempts, each refused
    } finally {
      client.disconnect();
      consoleError.mockRestore();
    }
    const errors = lines.filter((line) => line.action === 'redis.error');
    expect(errors).toHaveLength(1); // the same refusal repeated within the interval: one line
    expect(errors[0]).toMatchObject({ level: 40, redis: `127.0.0.1:${port}`, err: { code: 'ECONNREFUSED' } });
    expect(stderr.filter((text) => text.includes('Unhandled error event'))).toEqual([]);
  });
});
