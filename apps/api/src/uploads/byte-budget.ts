import { AppError, ErrorCode } from '@app/contracts';

interface Waiting {
  bytes: number;
  grant: () => void;
}

/**
 * A budget of bytes held in memory across all requests of this process (uploads being read and checked, URL
 * bodies being fetched): a reader reserves the most it may hold before reading, and gives it back when the
 * bytes are stored and dropped. Reservations are granted first come, first served; a reservation that cannot
 * be granted within `waitMs` is refused with 503 + Retry-After, so memory stays bounded however many requests
 * arrive. (A few lines of our own: the semaphore libraries on the registry count permits, not bytes, or wait
 * without a time limit.)
 */
export class ByteBudget {
  private used = 0;
  private readonly queue: Waiting[] = [];

  constructor(
    readonly capacity: number,
    private readonly waitMs: number,
  ) {}

  /** Bytes reserved now. */
  get inUse(): number {
    return this.used;
  }

  /** Runs `work` while holding `bytes` of the budget (at most the whole budget). */
  async withReservation<T>(bytes: number, work: () => Promise<T>): Promise<T> {
    const release = await this.acquire(bytes);
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** Holds `bytes` of the budget (at most the whole budget) until the returned function is called (once). */
  async acquire(bytes: number): Promise<() => void> {
    const amount = Math.min(bytes, this.capacity);
    await this.reserve(amount);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(amount);
    };
  }

  private reserve(bytes: number): Promise<void> {
    if (this.queue.length === 0 && this.used + bytes <= this.capacity) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry: Waiting = {
        bytes,
        grant: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.queue.splice(this.queue.indexOf(entry), 1);
        reject(new AppError(ErrorCode.ServiceUnavailable, 'too many images are being received at once; try again shortly', { retryAfterSeconds: 2 }));
      }, this.waitMs);
      this.queue.push(entry);
    });
  }

  private release(bytes: number): void {
    this.used -= bytes;
    while (this.queue.length > 0 && this.used + this.queue[0].bytes <= this.capacity) {
      const next = this.queue.shift()!;
      this.used += next.bytes;
      next.grant();
    }
  }
}
