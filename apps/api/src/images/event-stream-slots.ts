import { Injectable } from '@nestjs/common';
import { AppError, ErrorCode, TenantId } from '@app/contracts';
import { AppConfig } from '@app/config';

/**
 * Open event streams (GET /v1/images/:hash/events) per tenant in this API process, at most SSE_MAX_PER_TENANT.
 * A stream holds a socket, a subscription and timers for up to SSE_MAX_MS; without a cap one key could open
 * thousands and starve every other tenant of file descriptors and memory. Past the cap: 429 with Retry-After.
 * Bounded: one counter per tenant that has a stream open, removed when its last stream closes.
 */
@Injectable()
export class EventStreamSlots {
  private readonly open = new Map<TenantId, number>();

  constructor(private readonly config: AppConfig) {}

  /**
   * Takes a slot for `tenant`; call the returned function exactly once when the stream ends.
   * @throws AppError RATE_LIMITED (429, retryAfterSeconds 5) when the tenant already has SSE_MAX_PER_TENANT open.
   */
  acquire(tenant: TenantId): () => void {
    const count = this.open.get(tenant) ?? 0;
    const limit = this.config.values.SSE_MAX_PER_TENANT;
    if (count >= limit) {
      throw new AppError(ErrorCode.RateLimited, `too many open event streams for this key (at most ${limit} per API process, SSE_MAX_PER_TENANT); close one or read GET /v1/images/:hash`, { retryAfterSeconds: 5 });
    }
    this.open.set(tenant, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(tenant) ?? 1) - 1;
      if (left > 0) this.open.set(tenant, left);
      else this.open.delete(tenant);
    };
  }
}
