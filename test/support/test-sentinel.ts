import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Redis from 'ioredis';
import { freePort } from './free-port';
import { stopChild, TestRedis } from './test-redis';

/** The name the sentinels monitor. */
export const SENTINEL_MASTER = 'mymaster';

/**
 * A Sentinel deployment of the test's own on loopback: two data nodes (a primary and its replica, both with
 * AOF fsync every second, as compose runs Redis) and three sentinels (quorum 2) that fail over one second after
 * the primary stops answering. Everything lives in one temp folder; stop() ends every process and removes it.
 */
export class TestSentinels {
  /** `data`: requirepass (and masterauth) of the data nodes; `sentinel`: the sentinels' own requirepass. */
  private constructor(private readonly passwords: { data?: string; sentinel?: string } = {}) {}

  private readonly dir = mkdtempSync(join(tmpdir(), 'iiq-sentinel-'));
  /** Data nodes by port (a killed one is replaced by its restart on the same port and folder). */
  readonly nodes = new Map<number, TestRedis>();
  private readonly sentinels: Array<{ port: number; process: ChildProcess }> = [];

  /** `host:port` list for REDIS_SENTINELS. */
  get sentinelList(): string {
    return this.sentinels.map(({ port }) => `127.0.0.1:${port}`).join(',');
  }

  /** The app settings that reach Redis through these sentinels. */
  get env(): Record<string, string> {
    return {
      REDIS_SENTINELS: this.sentinelList,
      REDIS_SENTINEL_MASTER: SENTINEL_MASTER,
      ...(this.passwords.data ? { REDIS_PASSWORD: this.passwords.data } : {}),
      ...(this.passwords.sentinel ? { REDIS_SENTINEL_PASSWORD: this.passwords.sentinel } : {}),
    };
  }

  static async start(passwords: { data?: string; sentinel?: string } = {}): Promise<TestSentinels> {
    const set = new TestSentinels(passwords);
    try {
      const primary = await set.startNode(await freePort());
      await set.startNode(await freePort(), primary.port);
      for (let i = 0; i < 3; i++) await set.startSentinel(primary.port);
      await set.waitFor(async () => (await set.replicasSeen()) >= 1, 20_000, 'the sentinels to see the replica');
      return set;
    } catch (error) {
      await set.stop();
      throw error;
    }
  }

  private nodeDir(port: number): string {
    return join(this.dir, `node-${port}`);
  }

  /** Starts (or restarts, with its AOF) the data node on `port`; a replica of `primaryPort` when given. */
  async startNode(port: number, primaryPort?: number): Promise<TestRedis> {
    const dir = this.nodeDir(port);
    mkdirSync(dir, { recursive: true });
    const password = this.passwords.data;
    const args = ['--maxmemory-policy', 'noeviction', ...(password ? ['--requirepass', password, '--masterauth', password] : []), ...(primaryPort ? ['--replicaof', '127.0.0.1', String(primaryPort)] : [])];
    const node = await TestRedis.start(port, { appendOnlyDir: dir, args, password });
    this.nodes.set(port, node);
    return node;
  }

  private async startSentinel(primaryPort: number): Promise<void> {
    const port = await freePort();
    const config = join(this.dir, `sentinel-${port}.conf`);
    writeFileSync(
      config,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${this.dir}`,
        `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${primaryPort} 2`,
        `sentinel down-after-milliseconds ${SENTINEL_MASTER} 1000`,
        `sentinel failover-timeout ${SENTINEL_MASTER} 3000`,
        `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
        ...(this.passwords.data ? [`sentinel auth-pass ${SENTINEL_MASTER} ${this.passwords.data}`] : []),
        ...(this.passwords.sentinel ? [`requirepass ${this.passwords.sentinel}`] : []),
        '',
      ].join('\n'),
    );
    const child = spawn('redis-server', [config, '--sentinel'], { stdio: 'ignore' });
    this.sentinels.push({ port, process: child });
    await this.waitFor(async () => (await this.askSentinel(port, (client) => client.call('SENTINEL', 'get-master-addr-by-name', SENTINEL_MASTER))) !== undefined, 10_000, `sentinel on ${port}`);
  }

  /** One command to one sentinel; undefined when it does not answer. */
  private async askSentinel<T>(port: number, command: (client: Redis) => Promise<T>): Promise<T | undefined> {
    const client = new Redis({ port, host: '127.0.0.1', password: this.passwords.sentinel, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await command(client);
    } catch {
      return undefined;
    } finally {
      client.disconnect();
    }
  }

  /** The primary's port as a majority of sentinels name it (undefined while they disagree or do not answer). */
  async primaryPort(): Promise<number | undefined> {
    const answers = await Promise.all(this.sentinels.map(({ port }) => this.askSentinel(port, (client) => client.call('SENTINEL', 'get-master-addr-by-name', SENTINEL_MASTER) as Promise<[string, string] | null>)));
    const ports = answers.map((answer) => (answer ? Number(answer[1]) : undefined)).filter((port) => port !== undefined);
    const first = ports[0];
    return first !== undefined && ports.filter((port) => port === first).length >= 2 ? first : undefined;
  }

  /** Replicas the first sentinel knows of that are up (not flagged down or disconnected). */
  private async replicasSeen(): Promise<number> {
    const replicas = (await this.askSentinel(this.sentinels[0].port, (client) => client.call('SENTINEL', 'replicas', SENTINEL_MASTER) as Promise<string[][]>)) ?? [];
    return replicas.filter((fields) => {
      const flags = fields[fields.indexOf('flags') + 1] ?? '';
      return !/s_down|o_down|disconnected/.test(flags);
    }).length;
  }

  /** kill -9 of the current primary; resolves with its port once the process is gone. */
  async killPrimary(): Promise<number> {
    const port = await this.primaryPort();
    if (port === undefined) throw new Error('the sentinels do not agree on a primary');
    await this.nodes.get(port)!.kill('SIGKILL');
    return port;
  }

  /**
   * Brings a killed node back on its port with its AOF; the sentinels turn it into a replica of the current
   * primary. Resolves once it is in sync and the sentinels count it as a good replica again.
   */
  async restartAsReplica(port: number): Promise<void> {
    const node = await this.startNode(port);
    const client = node.client({ password: this.passwords.data });
    client.on('error', () => undefined);
    try {
      await this.waitFor(async () => /master_link_status:up/.test(await client.info('replication')), 30_000, `node ${port} to sync as a replica`);
    } finally {
      client.disconnect();
    }
    await this.waitFor(async () => (await this.replicasSeen()) >= 1, 30_000, 'the sentinels to count the restarted replica');
  }

  private async waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await check().catch(() => false)) return;
      await sleep(100);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }

  async stop(): Promise<void> {
    await Promise.all(this.sentinels.map(({ process }) => stopChild(process)));
    await Promise.all([...this.nodes.values()].map((node) => node.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
