import { createServer } from 'node:net';
import Redis from 'ioredis';
import pino from 'pino';
import { EventEmitter } from 'node:events';
import { logConnectionErrors, logQueueErrors } from './connection-errors';

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

describe('logQueueErrors', () => {
  const collect = () => {
    const lines: Array<Record<string, unknown>> = [];
    return { lines, logger: pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) }) };
  };

  it('writes "Redis unavailable" errors as one warning per interval with the count held back, others at once', () => {
    const { lines, logger } = collect();
    const emitter = new EventEmitter();
    logQueueErrors(emitter, logger, { action: 'queue.error', what: 'the queue' });
    for (let i = 0; i < 9; i++) emitter.emit('error', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' }));
    emitter.emit('error', Object.assign(new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:6379'), { code: 'ECONNREFUSED' })], ''), { code: 'ECONNREFUSED' }));
    emitter.emit('error', new Error('WRONGTYPE Operation against a key holding the wrong kind of value'));
    expect(lines.map((line) => [line.level, line.action, line.repeatsSinceLast])).toEqual([
      [40, 'queue.error', 0],
      [50, 'queue.error', undefined],
    ]);
  });

  it('writes other errors at the level asked for (QueueEvents: a warning, polling covers the gap)', () => {
    const { lines, logger } = collect();
    const emitter = new EventEmitter();
    logQueueErrors(emitter, logger, { action: 'queue_events.error', what: 'QueueEvents', otherLevel: 'warn' });
    emitter.emit('error', new Error('ERR unknown command'));
    expect(lines).toMatchObject([{ level: 40, action: 'queue_events.error', err: { message: 'ERR unknown command' } }]);
  });
});
