import { AppError, ErrorCode } from '@app/contracts';

/** Most client addresses remembered at once; past it the oldest window is dropped (memory stays bounded under a spray of addresses). */
const MAX_ADDRESSES = 10_000;

/**
 * This process' own count of requests refused for their API key, per client address, for when Redis cannot count
 * them (full, away): such a request still gets its 401 (a refusal never needs Redis), and past `limit` refusals in
 * `windowMs` its address gets 429 until the window ends, so a Redis in trouble is no unlimited key guessing. Counted
 * per API process (N processes allow N × `limit`), only while Redis fails; Redis' shared count takes over again
 * when it answers.
 */
export class LocalRefusalLimit {
  /** Address → its window's start (ms since epoch) and refusals in it; Map order is insertion order, oldest first. */
  private readonly windows = new Map<string, { startedAt: number; count: number }>();

  /** `limit`: refusals per address and window (0: no limit); `windowMs`: the window, ms. */
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Counts one refusal from `address`. Returns undefined while it is within the limit, else the seconds until its
   * window ends (≥ 1, for Retry-After).
   */
  hit(address: string): number | undefined {
    if (this.limit <= 0) return undefined;
    const now = this.now();
    let window = this.windows.get(address);
    if (!window || now - window.startedAt >= this.windowMs) {
      this.windows.delete(address);
      if (this.windows.size >= MAX_ADDRESSES) this.windows.delete(this.windows.keys().next().value as string);
      window = { startedAt: now, count: 0 };
      this.windows.set(address, window);
    }
    window.count++;
    return window.count > this.limit ? Math.max(1, Math.ceil((window.startedAt + this.windowMs - now) / 1000)) : undefined;
  }
}

/**
 * What a request refused for its key gets when Redis could not count the refusal: `refusal` (its 401), or 429 with
 * Retry-After once its address is past the local limit.
 */
export function refusalUncounted(limit: LocalRefusalLimit, address: string, refusal: AppError): AppError {
  const retryAfterSeconds = limit.hit(address);
  if (retryAfterSeconds === undefined) return refusal;
  return new AppError(ErrorCode.RateLimited, 'too many requests without a valid API key from this address; try again later', { retryAfterSeconds });
}
