import type Redis from 'ioredis';
import { AllowOomScript } from './allow-oom-script';
import { RedisKeys, WorkerHeartbeat } from '@app/contracts';

/** Redis' own clock in epoch ms, so that workers and APIs on hosts whose clocks differ agree on what has expired. */
const NOW_MS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** KEYS: heartbeat key, live set. ARGV: heartbeat JSON, ttl ms, worker id. Prunes too, so the set stays bounded without readers. */
const ANNOUNCE_BODY = `${NOW_MS}
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
`;

/** KEYS: live set. ARGV: most ids returned. Drops expired members, returns the live ones (soonest expiry first). */
const LIVE = `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
`;

/** More workers than this are not listed (a bound on the answer, far above any real deployment). */
const MAX_LISTED = 1000;

/**
 * Which workers are alive, found without reading the keyspace: each heartbeat sets the worker's key (JSON, with
 * a TTL) and its member in one sorted set scored by the key's expiry on Redis' clock. Reading prunes the set of
 * expired members and reads the rest: O(log n + workers), whatever else Redis holds (a SCAN over
 * `{<prefix>:workers}:*` visits every key: with a million keys, readiness took longer than its 1 s limit).
 */
export class WorkerRegistry {
  /**
   * Allowed over the cap: a heartbeat replaces a few hundred bytes, so it goes on while Redis is full and readiness
   * keeps seeing the workers that finish the jobs they hold.
   */
  private readonly announceScript = new AllowOomScript(ANNOUNCE_BODY);

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  /** Announces (or renews) a worker for `ttlMs`. */
  async announce(heartbeat: WorkerHeartbeat, ttlMs: number): Promise<void> {
    const args = [this.keys.worker(heartbeat.workerId), this.keys.liveWorkers(), JSON.stringify(heartbeat), ttlMs, heartbeat.workerId];
    await this.announceScript.eval(this.redis, 2, ...args);
  }

  /** Withdraws a worker at once (on shutdown), instead of after its TTL. */
  async withdraw(workerId: string): Promise<void> {
    await this.redis.multi().del(this.keys.worker(workerId)).zrem(this.keys.liveWorkers(), workerId).exec();
  }

  /** Heartbeats of the workers alive now. */
  async live(): Promise<WorkerHeartbeat[]> {
    const ids = (await this.redis.eval(LIVE, 1, this.keys.liveWorkers(), MAX_LISTED)) as string[];
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map((id) => this.keys.worker(id)));
    return values.filter((value): value is string => value !== null).map((value) => JSON.parse(value) as WorkerHeartbeat);
  }
}
