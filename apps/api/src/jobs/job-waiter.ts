import { Inject, Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { QueueEvents } from 'bullmq';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { decodeJobError, ErrorBody, INFERENCE_QUEUE, RedisKeys } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import type Redis from 'ioredis';
import { logQueueErrors, REDIS_CLIENT, RedisConnection } from '@app/redis';
import { InferenceQueue } from './inference-queue';
import { compareStreamIds, unreadEntriesRemovedUpTo } from './stream-ids';

export type JobOutcome =
  | { state: 'completed'; result: unknown }
  | { state: 'failed'; error: ErrorBody }
  | { state: 'timeout' }
  /** The job is not in Redis any more (Redis restarted without persistence, a failover lost writes, FLUSHALL). */
  | { state: 'vanished' }
  /** The caller's signal fired (its client hung up) before the job finished. */
  | { state: 'abandoned' };

interface Waiter {
  settle: (outcome: JobOutcome) => void;
  /** Re-check the job in Redis (an event said something happened, or a backup poll is due). */
  check: () => void;
  /** When the backup poll is next due while QueueEvents delivers (ms since epoch), and how many have run. */
  nextPollAt: number;
  polls: number;
  /** False until the job is added (WaitOptions.enqueue): nothing to poll before that. */
  added: boolean;
}

export interface WaitOptions {
  /**
   * Adds the job. Run after the waiter is registered, so no event about the job can come before the waiter
   * listens: no state check is needed first. Its error rejects wait().
   */
  enqueue?: () => Promise<void>;
}

/** While events flow, a waiter's backup poll comes 2 poll intervals after it starts, then 4, 8, 16 apart, then every 16. */
const BACKOFF_FIRST = 2;
const BACKOFF_MAX = 16;

/**
 * Waits for a job to finish. Primary signal: one shared QueueEvents subscription (Redis stream) that
 * settles the waiter of the job it names. Backup: reading the job's state, because events are best-effort (a
 * reconnect or a trimmed stream loses them). The backup costs next to nothing while events flow: one sweep
 * every JOB_POLL_INTERVAL_MS for all waiters reads a waiter's state only
 *   - on every sweep while QueueEvents has been silent for a whole interval (idle queue, dropped connection,
 *     events disabled, no worker): the old fixed-interval polling, where it is needed;
 *   - otherwise on a back-off (2 intervals after the wait starts, then 4, 8 and 16 apart, then every 16);
 *   - and at once for every waiter when the stream lost entries QueueEvents never read (one XINFO STREAM per
 *     sweep, whatever the number of waiters; see unreadEntriesRemovedUpTo): a completion may have been among
 *     them. Without this, such a loss waited up to 16 intervals (8 s by default).
 * A waiter registered before its job is added (WaitOptions.enqueue) needs no first check; one registered after
 * (joining an existing job) checks once at once, so a completion can never fall between add and wait.
 */
@Injectable()
export class JobWaiter implements OnModuleInit, OnApplicationShutdown {
  private events?: QueueEvents;
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** When QueueEvents last delivered any event (ms since epoch; 0: never). */
  private lastEventAt = 0;
  /** The stream id ("<ms>-<seq>") of the newest event QueueEvents delivered; '' before the first. */
  private lastEventId = '';
  private gapCheckRunning = false;
  /** The largest deleted stream id already answered by polling every waiter. */
  private gapHandledUpTo = '';
  private sweepTimer?: NodeJS.Timeout;
  private waiterCount = 0;

  constructor(
    private readonly jobs: InferenceQueue,
    private readonly config: AppConfig,
    private readonly keys: RedisKeys,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  onModuleInit(): void {
    const env = this.config.values;
    if (!env.QUEUE_EVENTS_ENABLED) {
      this.logger.warn({ action: 'queue_events.disabled' }, 'QueueEvents disabled: waiting for jobs by polling only');
      return;
    }
    this.events = new QueueEvents(INFERENCE_QUEUE, { connection: RedisConnection.fromEnv(env).bullConnection(), prefix: env.QUEUE_PREFIX });
    this.events.on('completed', ({ jobId, returnvalue }, id) => {
      this.heard(id);
      this.notify(jobId, { state: 'completed', result: returnvalue });
    });
    // A failed event may be one attempt of several: let the waiter confirm the final state.
    this.events.on('failed', ({ jobId }, id) => {
      this.heard(id);
      this.wake(jobId);
    });
    // Any other event says the stream is flowing too.
    for (const event of ['added', 'waiting', 'active', 'drained', 'removed', 'progress', 'stalled', 'delayed', 'retries-exhausted'] as const) {
      this.events.on(event, (_args: unknown, id: string) => this.heard(id));
    }
    // Polling covers the gap: a warning, and while Redis is away one per 10 s (it retried every second, a line each).
    logQueueErrors(this.events, this.logger, { action: 'queue_events.error', what: 'QueueEvents (polling covers the gap)', otherLevel: 'warn' });
  }

  /**
   * Resolves when the job completes or fails for good, with `vanished` when it is no longer in Redis, `timeout`
   * after timeoutMs, or `abandoned` as soon as `signal` fires (once the job is added). Rejects with
   * options.enqueue's error.
   */
  wait(jobId: string, timeoutMs: number, signal?: AbortSignal, options: WaitOptions = {}): Promise<JobOutcome> {
    return new Promise((resolve, reject) => {
      let done = false;
      let checking = false;
      let deadline: NodeJS.Timeout | undefined;
      const abandon = () => waiter.settle({ state: 'abandoned' });
      const interval = this.config.values.JOB_POLL_INTERVAL_MS;
      const started = Date.now();

      const waiter: Waiter = {
        nextPollAt: Date.now() + BACKOFF_FIRST * interval,
        polls: 0,
        added: !options.enqueue,
        settle: (outcome) => {
          if (done) return;
          done = true;
          clearTimeout(deadline);
          signal?.removeEventListener('abort', abandon);
          this.unregister(jobId, waiter);
          resolve(outcome);
        },
        check: () => {
          if (done || checking) return;
          checking = true;
          void this.readOutcome(jobId)
            .then((outcome) => outcome && waiter.settle(outcome))
            .catch((error) => this.logger.warn({ action: 'job.poll_failed', jobId, err: error }, 'job state check failed; will retry'))
            .finally(() => (checking = false));
        },
      };

      const start = () => {
        waiter.added = true;
        if (done) return;
        deadline = setTimeout(() => waiter.settle({ state: 'timeout' }), Math.max(0, started + timeoutMs - Date.now()));
        if (signal?.aborted) return abandon();
        signal?.addEventListener('abort', abandon, { once: true });
      };
      this.register(jobId, waiter);
      if (!options.enqueue) {
        start();
        return waiter.check();
      }
      options.enqueue().then(start, (error) => {
        done = true;
        this.unregister(jobId, waiter);
        reject(error);
      });
    });
  }

  private heard(id: string | undefined): void {
    this.lastEventAt = Date.now();
    if (id && compareStreamIds(id, this.lastEventId) > 0) this.lastEventId = id;
  }

  /**
   * Polls every waiter at once when the events stream lost entries before QueueEvents read them. At most one
   * check runs at a time, and each loss is answered once (gapHandledUpTo).
   */
  private async pollAllIfEventsTrimmedUnread(): Promise<void> {
    if (this.gapCheckRunning || !this.events || !this.lastEventId) return;
    this.gapCheckRunning = true;
    try {
      const gone = unreadEntriesRemovedUpTo((await this.redis.xinfo('STREAM', this.keys.queueEvents(INFERENCE_QUEUE))) as unknown[], this.lastEventId);
      if (!gone || compareStreamIds(gone, this.gapHandledUpTo) <= 0) return;
      this.gapHandledUpTo = gone;
      this.logger.warn({ action: 'queue_events.gap', lastDelivered: this.lastEventId, removedUpTo: gone, waiting: this.waiterCount }, 'events were removed before QueueEvents read them; polling every waiting job now');
      for (const set of this.waiters.values()) for (const waiter of set) if (waiter.added) waiter.check();
    } catch {
      // Redis trouble: the back-off polls (and the request's own deadline) still cover every waiter.
    } finally {
      this.gapCheckRunning = false;
    }
  }

  /** One pass over every waiter: the backup polls that are due (see the class comment). */
  private sweep(): void {
    const now = Date.now();
    const interval = this.config.values.JOB_POLL_INTERVAL_MS;
    const silent = !this.events || now - this.lastEventAt >= interval;
    // While silent every waiter polls on this sweep anyway: the gap check is for a stream that flows.
    if (!silent) void this.pollAllIfEventsTrimmedUnread();
    for (const set of this.waiters.values()) {
      for (const waiter of set) {
        if (!waiter.added || (!silent && now < waiter.nextPollAt)) continue;
        waiter.polls++;
        waiter.nextPollAt = now + Math.min(BACKOFF_MAX, BACKOFF_FIRST << waiter.polls) * interval;
        waiter.check();
      }
    }
  }

  /**
   * The job's final outcome, or undefined while it is still waiting or running. The state is read first:
   * a job object fetched before its state could be "completed" with no return value yet.
   */
  private async readOutcome(jobId: string): Promise<JobOutcome | undefined> {
    const state = await this.jobs.getStateById(jobId);
    if (state === 'waiting' || state === 'active') return undefined;
    const job = state === 'unknown' ? undefined : await this.jobs.getJob(jobId);
    if (!job) return { state: 'vanished' };
    if (state === 'completed') return { state: 'completed', result: job.returnvalue };
    return { state: 'failed', error: decodeJobError(job.failedReason) };
  }

  private notify(jobId: string, outcome: JobOutcome): void {
    for (const waiter of this.waiters.get(jobId) ?? []) waiter.settle(outcome);
  }

  private wake(jobId: string): void {
    for (const waiter of this.waiters.get(jobId) ?? []) waiter.check();
  }

  private register(jobId: string, waiter: Waiter): void {
    let set = this.waiters.get(jobId);
    if (!set) this.waiters.set(jobId, (set = new Set()));
    set.add(waiter);
    if (this.waiterCount++ === 0) this.sweepTimer = setInterval(() => this.sweep(), this.config.values.JOB_POLL_INTERVAL_MS);
  }

  private unregister(jobId: string, waiter: Waiter): void {
    const set = this.waiters.get(jobId);
    if (!set?.delete(waiter)) return;
    if (set.size === 0) this.waiters.delete(jobId);
    if (--this.waiterCount === 0) clearInterval(this.sweepTimer);
  }

  /** Requests still waiting (bounded by the HTTP server's connection limits). */
  get pending(): number {
    return this.waiters.size;
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.sweepTimer);
    await this.events?.close();
  }
}

