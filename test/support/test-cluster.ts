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
 * A Redis Cluster of the test's own: `primaries` × (1 + `replicas`) redis-server processes with
 * `--cluster-enabled yes` on free loopback ports, each with its nodes file and data in one temporary folder, joined
 * by `redis-cli --cluster create … --cluster-replicas <replicas>` (slots split evenly over the primaries).
 * `--cluster-node-timeout 2000`: a primary is failed over about 2–4 s after it stops answering. stop() ends them by
 * pid and removes the folder. Replicas sync over the network; nothing is written to disk but the nodes files.
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

  static async start(primaries = 3, replicas = 0): Promise<TestCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'iiq-cluster-'));
    const ports: number[] = [];
    for (let i = 0; i < primaries * (1 + replicas); i++) {
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
      await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 30_000 });
      for (const port of ports) await cluster.waitFor(port, (info) => info.includes('cluster_state:ok'), 'cluster');
      if (replicas > 0) for (const port of ports) await cluster.waitFor(port, (info) => !info.includes('role:slave') || info.includes('master_link_status:up'), 'replication');
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** Polls one node (INFO cluster, CLUSTER INFO, or INFO replication) until `ready` accepts the answer, for up to 20 s. */
  private async waitFor(port: number, ready: (info: string) => boolean, what: 'server' | 'cluster' | 'replication'): Promise<void> {
    for (let i = 0; i < 400; i++) {
      const node = this.node(port);
      try {
        const info = what === 'server' ? await node.info('cluster') : what === 'replication' ? await node.info('replication') : ((await node.call('CLUSTER', 'INFO')) as string);
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

  /** The port of the primary that serves `key`'s slot now (CLUSTER SLOTS asked of any live node). */
  async primaryOf(key: string): Promise<number> {
    for (const port of this.ports) {
      if (!this.alive(port)) continue;
      const node = this.node(port);
      try {
        const slot = (await node.call('CLUSTER', 'KEYSLOT', key)) as number;
        const ranges = (await node.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][];
        const range = ranges.find(([from, to]) => slot >= from && slot <= to);
        if (range) return Number(range[2][1]);
      } catch {
        // try the next node
      } finally {
        node.disconnect();
      }
    }
    throw new Error(`no live node knows the primary of ${key}`);
  }

  private alive(port: number): boolean {
    const child = this.processes[this.ports.indexOf(port)];
    return child.exitCode === null && child.signalCode === null;
  }

  /** SIGKILLs one node (a crash) and resolves once it has exited. */
  async kill(port: number): Promise<void> {
    const child = this.processes[this.ports.indexOf(port)];
    if (!this.alive(port)) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** A cluster client for the test (caller disconnects). */
  client(): Cluster {
    return new Cluster(this.ports.map((port) => ({ host: '127.0.0.1', port })), { redisOptions: { maxRetriesPerRequest: 1 } });
  }

  /** Every key matching `pattern`, by node port: KEYS on each primary (a test's small keyspace). */
  async keysByNode(pattern = '*'): Promise<Map<number, string[]>> {
    const found = new Map<number, string[]>();
    for (const port of this.ports) {
      if (!this.alive(port)) continue;
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
