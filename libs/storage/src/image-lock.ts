import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import { AppError, ErrorCode, RedisKeys, TenantId } from '@app/contracts';
import { AllowOomScript } from '@app/redis/allow-oom-script';

/** Deletes the lock only if it is still ours (it may have expired and been taken by someone else). */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** SET NX PX as a script, so it can be taken even while Redis is full, for an erasure (KEYS: lock. ARGV: token, ms). */
const ACQUIRE = `return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')`;

export interface LockOptions {
  /**
   * Take the lock even when Redis is full (maxmemory reached under noeviction refuses SET with OOM): for work
   * that only frees memory, such as an erasure, which is how a tenant makes room. The lock is one small key,
   * deleted when the work ends (and expiring by itself). Redis before 7 does not know the flag: there the lock
   * is taken as usual.
   */
  evenWhenFull?: boolean;
}

/**
 * A lock on one tenant's image, held while its bytes and metadata are written together (an upload) or taken away
 * together (an erasure), so an erasure never lands between an upload's bytes and its metadata (which would leave
 * metadata without bytes, or bytes without metadata). One Redis key with an expiry, set only if absent, released
 * only by its holder (the single-instance pattern of the Redis documentation's distributed-locks page; the
 * critical sections are a rename and a few Redis writes, far shorter than the expiry).
 */
export class ImageLocks {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    /** How long a holder may keep the lock before it expires by itself (ms). */
    private readonly expiresMs = 30_000,
    /** How long to wait for it before giving up with 503 (ms). */
    private readonly waitMs = 10_000,
  ) {}

  /** The lock's SET for evenWhenFull (whether this Redis knows script flags is learnt on first use). */
  private readonly acquireEvenWhenFull = new AllowOomScript(ACQUIRE);

  async withLock<T>(tenant: TenantId, imageHash: string, work: () => Promise<T>, options: LockOptions = {}): Promise<T> {
    const key = this.keys.tenant(tenant).imageLock(imageHash);
    const token = randomUUID();
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      let acquired: string | null;
      try {
        acquired = options.evenWhenFull ? ((await this.acquireEvenWhenFull.eval(this.redis, 1, key, token, this.expiresMs)) as string | null) : await this.redis.set(key, token, 'PX', this.expiresMs, 'NX');
      } catch (error) {
        // A timed-out SET (REDIS_COMMAND_TIMEOUT_MS) may still run when Redis answers again, leaving a lock nobody
        // holds for `expiresMs`; the release, sent after it on the same connection, runs right after it.
        void this.redis.eval(RELEASE, 1, key, token).catch(() => undefined);
        throw error;
      }
      if (acquired === 'OK') break;
      if (Date.now() > deadline) throw new AppError(ErrorCode.ServiceUnavailable, 'the image is being changed by another request; try again shortly', { retryAfterSeconds: 1 });
      await sleep(20);
    }
    try {
      return await work();
    } finally {
      await this.redis.eval(RELEASE, 1, key, token).catch(() => undefined);
    }
  }
}
