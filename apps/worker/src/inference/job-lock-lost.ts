/**
 * BullMQ's words for "this worker's hold on a job was gone when it came back to it": the lock expired before it
 * could be renewed (`could not renew lock for job …`), or the job's lock or record was missing or another's when
 * the worker went to record its end (`Missing lock for job … moveToFinished`, `Missing key for job …
 * moveToDelayed`, `Lock mismatch for job …`; BullMQ's finishedErrors, codes -2, -1, -6).
 *
 * A Redis outage produces them for every job the worker held: frozen or unreachable for longer than
 * LOCK_DURATION_MS, the locks expire; restarted without its data, the job records are gone. The stalled-job check
 * runs a job whose record remains again (at-least-once); one whose record was lost with Redis' data is gone
 * (its client got 503 or sees it vanish). Nothing in this process is broken, so they are not `worker.error`.
 */
const LOCK_LOST = /^(could not renew lock for job |Missing lock for job |Missing key for job |Lock mismatch for job )/;
const LOCK_LOST_CODES: ReadonlySet<unknown> = new Set([-1, -2, -6]);

/** Whether `error` says the worker's lock on a job (or the job's record) was gone; see above. */
export function jobLockLost(error: unknown): boolean {
  if (!(error instanceof Error) || !LOCK_LOST.test(error.message)) return false;
  // BullMQ's finishedErrors carry their numeric code; the lock renewal's error has none.
  const code = (error as { code?: unknown }).code;
  return error.message.startsWith('could not renew lock') ? code === undefined : LOCK_LOST_CODES.has(code);
}

/**
 * The job id a lock-lost error names when the worker went to record a job's end (`Missing lock for job <id>.
 * moveToFinished`, `Lock mismatch for job <id>. Cmd …`), or undefined for any other error (the renewal's own
 * failure is reported by BullMQ's `lockRenewalFailed` event instead).
 */
export function lockLostJobId(error: unknown): string | undefined {
  if (!jobLockLost(error) || (error as Error).message.startsWith('could not renew lock')) return undefined;
  return /^[A-Za-z ]+ for job (.+?)\. /.exec((error as Error).message)?.[1];
}
