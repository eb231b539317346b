import { tmpdir } from 'node:os';
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

  /** The redis-server's process id (the bench reads its CPU time from /proc). */
  get pid(): number {
    return this.process.pid ?? -1;
  }

  /**
   * Starts a server, on `port` when given (to bring the same Redis address back after stop()). With
   * `appendOnlyDir` it persists like the compose setup (AOF, fsync every second) into that folder, so a
   * restart on the same folder brings the data back. `args` are more redis-server options (a maxmemory
   * policy, `--replicaof`, `--requirepass` with `password` for the readiness check...).
   */
  static async start(port?: number, options: { appendOnlyDir?: string; args?: string[]; password?: string } = {}): Promise<TestRedis> {
    port ??= await freePort();
    // Never the repository: a replica's full sync writes an RDB file into its --dir even with --save ''.
    const persistence = options.appendOnlyDir ? ['--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', options.appendOnlyDir] : ['--appendonly', 'no', '--dir', tmpdir()];
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, ...(options.args ?? [])], { stdio: 'ignore' });
    const redis = new TestRedis(child, port);
    const client = new Redis({ port, host: '127.0.0.1', password: options.password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined); // refused until the server is up: expected while we wait
    for (let i = 0; i < 100; i++) {
      try {
        await client.connect();
        // INFO, not PING: a replica without its primary answers INFO but refuses PING (MASTERDOWN).
        await client.info('server');
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

  client(options: { password?: string; db?: number } = {}): Redis {
    return new Redis({ port: this.port, host: '127.0.0.1', maxRetriesPerRequest: 1, ...options });
  }

  /** INFO commandstats as calls per command (`scan`, `keys`, ...), since the last CONFIG RESETSTAT. */
  static async commandCalls(client: Redis): Promise<Record<string, number>> {
    const calls: Record<string, number> = {};
    for (const [, name, count] of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[name] = Number(count);
    return calls;
  }

  async stop(): Promise<void> {
    await stopChild(this.process);
  }

  /** Sends `signal` (SIGKILL: a crash, nothing flushed) and resolves once the server has exited. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.kill(signal);
    await exited;
  }
}

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited (at once if it already had). A
 * teardown never waits for ever: a CI run once hung 180 s in an afterAll on a server that did not exit.
 */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  child.kill('SIGTERM');
  await exited;
  clearTimeout(timer);
}
