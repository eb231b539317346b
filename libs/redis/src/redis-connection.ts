import type { ConnectionOptions } from 'bullmq';
import Redis, { Cluster, ClusterOptions, RedisOptions } from 'ioredis';
import type { Env, HostPort } from '@app/config';
import { parseHostPorts } from '@app/config/redis-topology';
import { parseRedisUrl } from '@app/config/redis-url';

/** The settings a connection is made from (validated at start by the env schema). */
export type RedisConnectionEnv = Pick<Env, 'REDIS_URL' | 'REDIS_SENTINELS' | 'REDIS_SENTINEL_MASTER' | 'REDIS_SENTINEL_PASSWORD' | 'REDIS_PASSWORD' | 'REDIS_CLUSTER_NODES'>;

/**
 * How Redis is reached. `standalone`: one address (REDIS_URL; a managed service's failover moves its DNS name).
 * `sentinel`: the sentinels name the current primary of `master` (REDIS_SENTINELS). `cluster`: a Redis Cluster
 * discovered from seed nodes (REDIS_CLUSTER_NODES); every connection is an ioredis Cluster, and BullMQ is given
 * Cluster instances (it duplicates them for its blocking connections).
 */
export type RedisTopology =
  | { mode: 'standalone'; url: string }
  | { mode: 'sentinel'; sentinels: HostPort[]; master: string; sentinelPassword?: string; password?: string }
  | { mode: 'cluster'; nodes: HostPort[]; password?: string };

/** Options that configure an ioredis Cluster as a whole; everything else goes to each node's connection (`redisOptions`). */
const CLUSTER_LEVEL = ['lazyConnect', 'enableOfflineQueue', 'enableReadyCheck'] as const;

/**
 * A reply of READONLY means the connection leads to a replica: a failover demoted the node behind this address
 * (a DNS name a managed service moved, or a primary Sentinel demoted while we were connected). Reconnecting finds
 * the new primary (through DNS, or by asking the sentinels again). The command itself fails (503 + Retry-After on
 * the API) rather than being sent again.
 */
const reconnectOnReadOnly = (error: Error): boolean => error.message.startsWith('READONLY');

/**
 * Pause before reconnect attempt `times` (1, 2, …), ms: 200, 400, … capped at 2 s. Shared by every connection
 * (BullMQ's own default grows to 20 s, which would leave a worker idle long after Redis is back or a failover
 * finished: at most 2 s after the new primary answers, every connection is on it).
 */
export const reconnectDelayMs = (times: number): number => Math.min(times * 200, 2000);

/**
 * The one place where both apps' Redis connections are made: our client, its duplicates (SSE pub/sub, the
 * rate-limit store), BullMQ's queue, worker and QueueEvents connections, the start-up probe and the maintenance
 * scripts. Built once from the environment; each caller adds its own options (fail-fast or not, blocking).
 */
export class RedisConnection {
  /** Cluster instances handed to BullMQ, which does not close a connection it was given (close() does). */
  private readonly handedOut: Cluster[] = [];

  constructor(readonly topology: RedisTopology) {}

  /** From the validated environment: Sentinel when REDIS_SENTINELS is set (REDIS_URL is then refused at start), else REDIS_URL. */
  static fromEnv(env: RedisConnectionEnv): RedisConnection {
    if (env.REDIS_CLUSTER_NODES !== undefined) {
      return new RedisConnection({ mode: 'cluster', nodes: parseHostPorts(env.REDIS_CLUSTER_NODES, 'REDIS_CLUSTER_NODES', 6379), password: env.REDIS_PASSWORD });
    }
    if (env.REDIS_SENTINELS !== undefined) {
      return new RedisConnection({
        mode: 'sentinel',
        sentinels: parseHostPorts(env.REDIS_SENTINELS, 'REDIS_SENTINELS', 26379),
        master: env.REDIS_SENTINEL_MASTER,
        sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
        password: env.REDIS_PASSWORD,
      });
    }
    return RedisConnection.fromUrl(env.REDIS_URL);
  }

  static fromUrl(url: string): RedisConnection {
    return new RedisConnection({ mode: 'standalone', url });
  }

  /**
   * ioredis options for one connection, `overrides` on top. Throws on a URL parseRedisUrl refuses (the env schema
   * has refused it at start already).
   */
  options(overrides: RedisOptions = {}): RedisOptions {
    const common: RedisOptions = { reconnectOnError: reconnectOnReadOnly, retryStrategy: reconnectDelayMs };
    const topology = this.topology;
    switch (topology.mode) {
      case 'standalone':
        return { ...parseRedisUrl(topology.url), ...common, ...overrides };
      case 'cluster':
        // One node's connection inside a Cluster (ioredis reconnects nodes through the cluster's own strategy).
        return { password: topology.password, ...overrides };
      case 'sentinel':
        return {
          sentinels: topology.sentinels,
          name: topology.master,
          role: 'master',
          sentinelPassword: topology.sentinelPassword,
          password: topology.password,
          // Subscribes to the sentinels' +switch-master: a failover that leaves the old primary reachable (a
          // partition, a manual SENTINEL FAILOVER) moves every connection at once rather than at its next error.
          failoverDetector: true,
          // Each sentinel that does not answer within this is skipped for the next one (ms).
          sentinelCommandTimeout: 1000,
          ...common,
          ...overrides,
        };
    }
  }

  /**
   * A new ioredis client. On a Cluster, an ioredis Cluster typed as Redis: it answers the same commands, each sent
   * to the primary of its key's slot (a script or MULTI to the slot of its keys, which must share one; a keyless
   * command such as INFO to any node: code that needs every node, like the eviction check, asks `isCluster`).
   */
  client(overrides: RedisOptions = {}): Redis {
    if (this.topology.mode !== 'cluster') return new Redis(this.options(overrides));
    return this.cluster(overrides) as unknown as Redis;
  }

  /**
   * BullMQ's `connection`: options, from which BullMQ makes its own connections (it sets maxRetriesPerRequest null
   * on blocking ones). On a Cluster, a Cluster instance (BullMQ cannot build one from options): lazy, so one BullMQ
   * only duplicates (a blocking Worker or QueueEvents) never connects; maxRetriesPerRequest null, which BullMQ
   * requires of a connection it may block on. close() ends these.
   */
  bullConnection(overrides: RedisOptions = {}): ConnectionOptions {
    if (this.topology.mode !== 'cluster') return this.options(overrides) as ConnectionOptions;
    const cluster = this.cluster({ maxRetriesPerRequest: null, lazyConnect: true, ...overrides });
    this.handedOut.push(cluster);
    return cluster as unknown as ConnectionOptions;
  }

  /** Ends the Cluster instances given to BullMQ (after BullMQ closed its queues and workers). */
  async close(): Promise<void> {
    await Promise.all(this.handedOut.splice(0).map((cluster) => cluster.quit().catch(() => cluster.disconnect())));
  }

  private cluster(overrides: RedisOptions): Cluster {
    if (this.topology.mode !== 'cluster') throw new Error('not a Redis Cluster topology');
    const { retryStrategy, ...rest } = overrides;
    const clusterLevel: ClusterOptions = {};
    const redisOptions: RedisOptions = { ...this.options() };
    for (const [name, value] of Object.entries(rest)) {
      if ((CLUSTER_LEVEL as readonly string[]).includes(name)) (clusterLevel as Record<string, unknown>)[name] = value;
      else (redisOptions as Record<string, unknown>)[name] = value;
    }
    if ('enableOfflineQueue' in clusterLevel) redisOptions.enableOfflineQueue = clusterLevel.enableOfflineQueue;
    return new Cluster(this.topology.nodes, {
      // Reconnects the whole cluster (re-reading its slots from any seed) with the same capped pause as the other modes.
      clusterRetryStrategy: (times) => (retryStrategy ?? reconnectDelayMs)(times) ?? null,
      // A slot that moved (MOVED/ASK after resharding or a failover) is followed at once. CLUSTERDOWN and TRYAGAIN
      // are retried every 200 / 100 ms up to ioredis' maxRedirections (16), about 3 s at most, then reach the caller
      // (503 + Retry-After on the API) rather than holding it longer.
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 100,
      slotsRefreshTimeout: 2000,
      ...clusterLevel,
      redisOptions,
    });
  }

  /** Where connections go, for messages and logs, without passwords: `redis://…` or `sentinel "mymaster" via a:26379,b:26379`. */
  describe(): string {
    const topology = this.topology;
    if (topology.mode === 'standalone') return redactRedisUrl(topology.url);
    const list = (nodes: HostPort[]) => nodes.map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)).join(',');
    if (topology.mode === 'cluster') return `cluster via ${list(topology.nodes)}`;
    return `sentinel "${topology.master}" via ${list(topology.sentinels)}`;
  }

  /** The variable to fix when Redis cannot be reached. */
  get setting(): string {
    return { standalone: 'REDIS_URL', sentinel: 'REDIS_SENTINELS and REDIS_SENTINEL_MASTER', cluster: 'REDIS_CLUSTER_NODES' }[this.topology.mode];
  }
}

/** The URL with its password replaced by `***`, for messages and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}
