import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import Redis, { Cluster } from 'ioredis';
import { freePort } from './free-port';

const run = promisify(execFile);

/**
 * A Redis Cluster of the test's own: `primaries` redis-server processes with `--cluster-enabled yes` on free
 * loopback ports, each with its nodes file and data in one temporary folder, joined by
 * `redis-cli --cluster create … --cluster-replicas 0` (slots split evenly). stop() ends them by pid and removes
 * the folder. Nothing persists (no RDB, no AOF).
 */
export class TestCluster {
  private constructor(
    private readonly processes: ChildProcess[],
    readonly ports: number[],
    private readonly dir: string,
  ) {}

  /** REDIS_CLUSTER_NODES for the apps: every node as a seed. */
  get nodes(): string {
    return this.ports.map((port) => `127.0.0.1:${port}`).join(',');
  }

  static async start(primaries = 3): Promise<TestCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'iiq-cluster-'));
    const ports: number[] = [];
    for (let i = 0; i < primaries; i++) {
      let port = await freePort();
      // A cluster node also listens on port + 10000 (its bus); both must be free and distinct from the others'.
      while (port > 55_000 || ports.includes(port) || ports.some((other) => other + 10_000 === port || port + 10_000 === other)) port = await freePort();
      ports.push(port);
    }
    const processes = ports.map((port) =>
      spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000', '--dir', dir, '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
        { stdio: 'ignore' },
      ),
    );
    const cluster = new TestCluster(processes, ports, dir);
    try {
      for (const port of ports) await cluster.waitFor(port, (info) => info.includes('cluster_enabled:1'), 'server');
      await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
      for (const port of ports) await cluster.waitFor(port, (info) => info.includes('cluster_state:ok'), 'cluster');
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** Polls one node (INFO server, or CLUSTER INFO) until `ready` accepts the answer, for up to 20 s. */
  private async waitFor(port: number, ready: (info: string) => boolean, what: 'server' | 'cluster'): Promise<void> {
    for (let i = 0; i < 400; i++) {
      const node = this.node(port);
      try {
        const info = what === 'server' ? await node.info('cluster') : ((await node.call('CLUSTER', 'INFO')) as string);
        if (ready(info)) return;
      } catch {
        // not listening yet
      } finally {
        node.disconnect();
      }
      await sleep(50);
    }
    throw new Error(`cluster node 127.0.0.1:${port} not ready (${what})`);
  }

  /** A plain connection to one node (for per-node reads: KEYS, CLUSTER COUNTKEYSINSLOT…). Caller disconnects. */
  node(port: number): Redis {
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    return client;
  }

  /** A cluster client for the test (caller disconnects). */
  client(): Cluster {
    return new Cluster(this.ports.map((port) => ({ host: '127.0.0.1', port })), { redisOptions: { maxRetriesPerRequest: 1 } });
  }

  /** Every key matching `pattern`, by node port: KEYS on each primary (a test's small keyspace). */
  async keysByNode(pattern = '*'): Promise<Map<number, string[]>> {
    const found = new Map<number, string[]>();
    for (const port of this.ports) {
      const node = this.node(port);
      try {
        found.set(port, (await node.keys(pattern)).sort());
      } finally {
        node.disconnect();
      }
    }
    return found;
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.processes.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
