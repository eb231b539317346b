/**
 * Lets a repeating log line through at most once per `intervalMs` and counts the ones held back, for errors that
 * come once per retry while an outside system is away (Redis down or full): one line every 10 s with the count,
 * not hundreds of identical lines. A line whose `key` differs from the last one written goes through at once.
 */
export class LogThrottle {
  private loggedAt = -Infinity;
  private lastKey: string | undefined;
  private heldBack = 0;

  constructor(private readonly intervalMs = 10_000) {}

  /**
   * Whether to write this line now: the number of lines held back since the last one written (0 or more), or
   * undefined to hold this one back (it is counted).
   */
  pass(key = ''): number | undefined {
    const now = Date.now();
    if (key === this.lastKey && now - this.loggedAt < this.intervalMs) {
      this.heldBack++;
      return undefined;
    }
    const heldBack = this.heldBack;
    this.loggedAt = now;
    this.lastKey = key;
    this.heldBack = 0;
    return heldBack;
  }
}
