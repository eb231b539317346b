import type Redis from 'ioredis';

/** Redis before 7 reads the `#!lua flags=…` line as Lua and fails to compile it. */
const FLAGS_UNKNOWN = /compil|unexpected symbol/i;

/**
 * A Lua script that Redis runs even while it is full (maxmemory reached under noeviction, where every other write
 * is refused with OOM): Redis 7's `allow-oom` flag, for writes that must go on then and cost next to nothing (a
 * worker's heartbeat, the lock of an erasure, which is how a tenant makes room). Redis before 7 does not know the
 * flag: the first refusal to compile it is remembered, and from then on the plain body runs (refused when full,
 * as any write there).
 */
export class AllowOomScript {
  private flagged = true;

  /** `body`: the script without its shebang line. */
  constructor(private readonly body: string) {}

  /** EVAL of the script (flagged while this Redis knows flags); throws what Redis answers otherwise. */
  async eval(redis: Redis, numKeys: number, ...args: (string | number)[]): Promise<unknown> {
    if (this.flagged) {
      try {
        return await redis.eval(`#!lua flags=allow-oom\n${this.body}`, numKeys, ...args);
      } catch (error) {
        if (!FLAGS_UNKNOWN.test((error as Error).message)) throw error;
        this.flagged = false;
      }
    }
    return redis.eval(this.body, numKeys, ...args);
  }
}
