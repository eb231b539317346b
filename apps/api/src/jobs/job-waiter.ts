import { Inject, Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { QueueEvents } from 'bullmq';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { decodeJobError, ErrorBody, INFERENCE_QUEUE } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { RedisConnection } from '@app/redis';
import { InferenceQueue } from './inference-queue';

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
  /** Re-check the job in Redis (an event said something happened, or the poll timer fired). */
  check: () => void;
}

/**
 * Waits for a job to finish. Primary signal: one shared QueueEvents subscription (Redis stream) that
 * wakes the waiter of the job it names. Backup: polling the job's state, because events are best-effort
 * (a reconnect or a trimmed stream loses them). The waiter is registered before the first state check,
 * so a completion can never fall between the two.
 */
@Injectable()
export class JobWaiter implements OnModuleInit, OnApplicationShutdown {
  private events?: QueueEvents;
  private readonly waiters = new Map<string, Set<Waiter>>();

  constructor(
    private readonly jobs: InferenceQueue,
    private readonly config: AppConfig,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  onModuleInit(): void {
    const env = this.config.values;
    if (!env.QUEUE_EVENTS_ENABLED) {
      this.logger.warn({ action: 'queue_events.disabled' }, 'QueueEvents disabled: waiting for jobs by polling only');
      return;
    }
    this.events = new QueueEvents(INFERENCE_QUEUE, { connection: RedisConnection.fromEnv(env).bullConnection(), prefix: env.QUEUE_PREFIX });
    this.events.on('completed', ({ jobId, returnvalue }) => this.notify(jobId, { state: 'completed', result: returnvalue }));
    // A failed event may be one attempt of several: let the waiter confirm the final state.
    this.events.on('failed', ({ jobId }) => this.wake(jobId));
    this.events.on('error', (error) => this.logger.warn({ action: 'queue_events.error', err: error }, 'QueueEvents error; polling covers the gap'));
  }

  /**
   * Resolves when the job completes or fails for good, with `vanished` when it is no longer in Redis, `timeout`
   * after timeoutMs, or `abandoned` as soon as `signal` fires.
   */
  wait(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobOutcome> {
    return new Promise((resolve) => {
      let done = false;
      let pollTimer: NodeJS.Timeout | undefined;
      let checking = false;
      const deadline = setTimeout(() => waiter.settle({ state: 'timeout' }), timeoutMs);
      const abandon = () => waiter.settle({ state: 'abandoned' });

      const waiter: Waiter = {
        settle: (outcome) => {
          if (done) return;
          done = true;
          clearTimeout(deadline);
          signal?.removeEventListener('abort', abandon);
          if (pollTimer) clearTimeout(pollTimer);
          this.unregister(jobId, waiter);
          resolve(outcome);
        },
        check: () => {
          if (done || checking) return;
          checking = true;
          void this.readOutcome(jobId)
            .then((outcome) => outcome && waiter.settle(outcome))
            .catch((error) => this.logger.warn({ action: 'job.poll_failed', jobId, err: error }, 'job state check failed; will retry'))
            .finally(() => {
              checking = false;
              schedulePoll();
            });
        },
      };
      const schedulePoll = () => {
        if (done) return;
        if (pollTimer) clearTimeout(pollTimer);
        pollTimer = setTimeout(waiter.check, this.config.values.JOB_POLL_INTERVAL_MS);
      };

      this.register(jobId, waiter);
      if (signal?.aborted) return abandon();
      signal?.addEventListener('abort', abandon, { once: true });
      waiter.check();
    });
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
  }

  private unregister(jobId: string, waiter: Waiter): void {
    const set = this.waiters.get(jobId);
    set?.delete(waiter);
    if (set && set.size === 0) this.waiters.delete(jobId);
  }

  /** Requests still waiting (bounded by the HTTP server's connection limits). */
  get pending(): number {
    return this.waiters.size;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.events?.close();
  }
}
