import type { ConnectionOptions } from 'bullmq';
import Redis, { RedisOptions } from 'ioredis';
import type { Env, HostPort } from '@app/config';
import { parseHostPorts } from '@app/config/redis-topology';
import { parseRedisUrl } from '@app/config/redis-url';

/** The settings a connection is made from (validated at start by the env schema). */
export type RedisConnectionEnv = Pick<Env, 'REDIS_URL' | 'REDIS_SENTINELS' | 'REDIS_SENTINEL_MASTER' | 'REDIS_SENTINEL_PASSWORD' | 'REDIS_PASSWORD'>;

/**
 * How Redis is reached. `standalone`: one address (REDIS_URL; a managed service's failover moves its DNS name).
 * `sentinel`: the sentinels name the current primary of `master` (REDIS_SENTINELS). A Cluster mode
 * (REDIS_CLUSTER_NODES) is one more member here, built by RedisConnection.client/bullConnection as an ioredis
 * Cluster (BullMQ takes a Cluster instance as its connection).
 */
export type RedisTopology =
  | { mode: 'standalone'; url: string }
  | { mode: 'sentinel'; sentinels: HostPort[]; master: string; sentinelPassword?: string; password?: string };

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
  constructor(readonly topology: RedisTopology) {}

  /** From the validated environment: Sentinel when REDIS_SENTINELS is set (REDIS_URL is then refused at start), else REDIS_URL. */
  static fromEnv(env: RedisConnectionEnv): RedisConnection {
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

  /** A new ioredis client. */
  client(overrides: RedisOptions = {}): Redis {
    return new Redis(this.options(overrides));
  }

  /**
   * BullMQ's `connection`: options, from which BullMQ makes its own connections (it sets maxRetriesPerRequest null
   * on blocking ones). In a Cluster mode this would be a Cluster instance.
   */
  bullConnection(overrides: RedisOptions = {}): ConnectionOptions {
    return this.options(overrides) as ConnectionOptions;
  }

  /** Where connections go, for messages and logs, without passwords: `redis://…` or `sentinel "mymaster" via a:26379,b:26379`. */
  describe(): string {
    const topology = this.topology;
    if (topology.mode === 'standalone') return redactRedisUrl(topology.url);
    const hosts = topology.sentinels.map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)).join(',');
    return `sentinel "${topology.master}" via ${hosts}`;
  }

  /** The variable to fix when Redis cannot be reached. */
  get setting(): string {
    return this.topology.mode === 'standalone' ? 'REDIS_URL' : 'REDIS_SENTINELS and REDIS_SENTINEL_MASTER';
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
