import { AppError, ErrorCode } from '@app/contracts';

interface Waiting {
  bytes: number;
  holder?: string;
  grant: () => void;
}

/** Gives the whole reservation back when called (again: nothing more); `shrinkTo` gives back all above `bytes`. */
export type Reservation = (() => void) & { shrinkTo: (bytes: number) => void };

const busy = () => new AppError(ErrorCode.ServiceUnavailable, 'too many images are being received at once; try again shortly', { retryAfterSeconds: 2 });

/**
 * A budget of bytes held in memory (or in flight to disk) across all requests of this process: a reader reserves
 * the most it may hold before reading, and gives it back when the bytes are stored or dropped. Reservations are
 * granted first come, first served; one that cannot be granted within `waitMs` is refused with 503 + Retry-After,
 * so memory stays bounded however many requests arrive. A holder (a tenant, or a client address) holds at most
 * half the budget (a larger reservation is cut to half), so one client cannot take it all: its further
 * reservations wait for its own, while other holders' reservations are granted past them.
 * (A few lines of our own: the semaphore libraries on the registry count permits, not bytes, or wait without a
 * time limit.)
 */
export class ByteBudget {
  private used = 0;
  private readonly queue: Waiting[] = [];
  private readonly byHolder = new Map<string, number>();

  constructor(
    readonly capacity: number,
    private readonly waitMs: number,
  ) {}

  /** True while a reservation waits for room (in the budget or in its holder's share). */
  get contended(): boolean {
    return this.queue.length > 0;
  }

  /** Bytes reserved now. */
  get inUse(): number {
    return this.used;
  }

  /** Runs `work` while holding `bytes` of the budget (at most the whole budget). */
  async withReservation<T>(bytes: number, work: () => Promise<T>, holder?: string): Promise<T> {
    const release = await this.acquire(bytes, holder);
    try {
      return await work();
    } finally {
      release();
    }
  }

  /**
   * Holds `bytes` of the budget (at most the whole budget) until the returned function is called; its `shrinkTo`
   * gives back what the holder turned out not to need (a file smaller than the most it could have been).
   * Throws 503 SERVICE_UNAVAILABLE when `holder` already holds half the budget, or no room frees up in time.
   */
  async acquire(bytes: number, holder?: string): Promise<Reservation> {
    // No single reservation takes more than half: a holder is never the only one served.
    let amount = Math.min(bytes, holder ? this.capacity / 2 : this.capacity);
    await this.reserve(amount, holder);
    const giveBack = (bytes: number) => {
      amount -= bytes;
      this.used -= bytes;
      this.forget(holder, bytes);
      this.grantWaiting();
    };
    const release = (() => giveBack(amount)) as Reservation;
    release.shrinkTo = (bytes: number) => {
      if (bytes < amount) giveBack(amount - Math.max(0, bytes));
    };
    return release;
  }

  private forget(holder: string | undefined, amount: number): void {
    if (!holder) return;
    const left = (this.byHolder.get(holder) ?? 0) - amount;
    if (left > 0) this.byHolder.set(holder, left);
    else this.byHolder.delete(holder);
  }

  private inBudget(bytes: number): boolean {
    return this.used + bytes <= this.capacity;
  }

  /** Within the holder's half of the budget. */
  private inShare(bytes: number, holder: string | undefined): boolean {
    return !holder || (this.byHolder.get(holder) ?? 0) + bytes <= this.capacity / 2;
  }

  private take(bytes: number, holder: string | undefined): void {
    this.used += bytes;
    if (holder) this.byHolder.set(holder, (this.byHolder.get(holder) ?? 0) + bytes);
  }

  private reserve(bytes: number, holder?: string): Promise<void> {
    // First come, first served: nobody passes a reservation that waits only for room in the budget (one that
    // waits for its holder's own share blocks nobody).
    if (this.inBudget(bytes) && this.inShare(bytes, holder) && !this.queue.some((waiting) => this.inShare(waiting.bytes, waiting.holder) && !this.inBudget(waiting.bytes))) {
      this.take(bytes, holder);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry: Waiting = {
        bytes,
        holder,
        grant: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.queue.splice(this.queue.indexOf(entry), 1);
        reject(busy());
      }, this.waitMs);
      this.queue.push(entry);
    });
  }

  /**
   * Grants waiting reservations in arrival order, passing over those whose holder is at its share, and stopping
   * at the first that waits for room in the budget (first come, first served).
   */
  private grantWaiting(): void {
    for (let i = 0; i < this.queue.length; ) {
      const next = this.queue[i];
      if (!this.inShare(next.bytes, next.holder)) {
        i++;
        continue;
      }
      if (!this.inBudget(next.bytes)) return;
      this.queue.splice(i, 1);
      this.take(next.bytes, next.holder);
      next.grant();
    }
  }
}
