import { ChildProcess, spawn } from 'node:child_process';
import Redis from 'ioredis';
import { freePort } from './free-port';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A redis-server of the test's own on a free loopback port, keeping nothing on disk.
 * Tests never flush or touch a Redis they did not start.
 */
export class TestRedis {
  private constructor(
    private readonly process: ChildProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * Starts a server, on `port` when given (to bring the same Redis address back after stop()). With
   * `appendOnlyDir` it persists like the compose setup (AOF, fsync every second) into that folder, so a
   * restart on the same folder brings the data back.
   */
  static async start(port?: number, options: { appendOnlyDir?: string } = {}): Promise<TestRedis> {
    port ??= await freePort();
    const persistence = options.appendOnlyDir ? ['--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', options.appendOnlyDir] : ['--appendonly', 'no'];
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence], { stdio: 'ignore' });
    const redis = new TestRedis(child, port);
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined); // refused until the server is up: expected while we wait
    for (let i = 0; i < 100; i++) {
      try {
        await client.connect();
        await client.ping();
        client.disconnect();
        return redis;
      } catch {
        client.disconnect();
        await sleep(50);
      }
    }
    child.kill('SIGKILL');
    throw new Error(`redis-server did not start on port ${port}`);
  }

  client(): Redis {
    return new Redis({ port: this.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.kill('SIGTERM');
    await exited;
  }
}
