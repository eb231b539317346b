/**
 * `promise`, or a rejection `Error('no answer within <ms> ms')` after `ms` milliseconds, for reads whose
 * caller must answer in bounded time (health checks, metric scrapes) while Redis may be stopped: ioredis
 * queues commands while it reconnects, so a read can otherwise wait for as long as the outage lasts. The
 * promise itself keeps running; its late result is dropped. The timer never holds the process open.
 */
export function answerWithin<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
