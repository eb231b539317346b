import { BeforeApplicationShutdown, Inject, OnApplicationBootstrap } from '@nestjs/common';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Job, UnrecoverableError, Worker } from 'bullmq';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AnalyzeJobData, AppError, ClassifyBatchJobData, ClassifyJobData, MatchFacesJobData, encodeJobError, ErrorCode, INFERENCE_QUEUE, InferenceJobName, isStalledTooOften, TenantId } from '@app/contracts';
import { AnalysisStore } from '@app/storage';
import { APP_LOGGER, LogThrottle } from '@app/logging';
import type Redis from 'ioredis';
import { entriesNamingJobs, jobRetention, REDIS_CLIENT, redisTryLater, StreamEntry } from '@app/redis';
import { AnalyzeHandler } from '../analyze/analyze.handler';
import { ClassifyBatchHandler } from '../classify/classify-batch.handler';
import { ClassifyHandler } from '../classify/classify.handler';
import { MatchFacesHandler } from '../faces/match-faces.handler';
import { HeartbeatService } from '../heartbeat/heartbeat.service';
import { ImageSource } from './image-source';
import { ModelHost } from './model-host';
import { WorkerMetrics } from '../ops/worker-metrics';
import { StallWatchdog } from './stall-watchdog';
import { jobLockLost, lockLostJobId } from './job-lock-lost';
import { PoisonWatch } from './poison-watch';
import { workerId } from '../worker-id';

/**
 * Failures worth another attempt (JOB_ATTEMPTS, with back-off): the image store or Redis may be back, another worker
 * may see the image store, a crashed thread is replaced. Every other coded failure (a property of the image, an
 * unknown model, a passed deadline) is the same on every attempt, so the job fails at once.
 */
const RETRYABLE: ReadonlySet<string> = new Set([ErrorCode.InputExpired, ErrorCode.ServiceUnavailable, ErrorCode.InferenceFailed, ErrorCode.Internal]);

/** How many of the newest event-stream entries are searched for an erased image's job (see forgetErasedJob). */
const ERASED_EVENTS_SCAN = 500;

/** The handlers' answer for a job whose image was erased before or while it ran (analyze: state, faces: erased). */
function wasErased(result: unknown): boolean {
  const value = result as { state?: unknown; erased?: unknown } | null | undefined;
  return value?.state === 'erased' || value?.erased === true;
}

/**
 * Consumes INFERENCE_QUEUE. BullMQ hands each job to exactly one worker (a Redis-side atomic move from
 * wait to active plus a lock this worker renews). Concurrency is at least the largest batch so the
 * batcher has jobs to group. Not started until the models are loaded (autorun: false).
 */
@Processor(INFERENCE_QUEUE, { autorun: false })
export class InferenceProcessor extends WorkerHost implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(
    private readonly config: AppConfig,
    private readonly models: ModelHost,
    private readonly classify: ClassifyHandler,
    private readonly classifyBatch: ClassifyBatchHandler,
    private readonly analyze: AnalyzeHandler,
    private readonly matchFaces: MatchFacesHandler,
    private readonly metrics: WorkerMetrics,
    private readonly images: ImageSource,
    private readonly heartbeat: HeartbeatService,
    private readonly watchdog: StallWatchdog,
    private readonly results: AnalysisStore,
    private readonly poisonWatch: PoisonWatch,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {
    super();
  }

  /** Jobs running here now, and when one last started or ended (epoch ms), for the stall watchdog. */
  private running = 0;
  private lastActivityAt = Date.now();

  async onApplicationBootstrap(): Promise<void> {
    await this.models.start();
    const env = this.config.values;
    const largestBatch = Math.max(...this.models.catalog.list().map((model) => model.maxBatchSize));
    this.worker.concurrency = Math.max(env.WORKER_CONCURRENCY, largestBatch);
    applyLockTiming(this.worker, env.LOCK_DURATION_MS, env.STALLED_INTERVAL_MS);
    // Jobs carry their own retention (set by the API); the worker's fallbacks are the same, never BullMQ's.
    const retention = jobRetention(env);
    this.worker.opts.removeOnComplete = retention.removeOnComplete;
    this.worker.opts.removeOnFail = retention.removeOnFail;
    this.worker.on('error', (error) => this.logWorkerError(error));
    // A job's short-lived image bytes go only once the job is recorded as completed: a worker killed after
    // running the job but before that record must leave the bytes for the retry (at-least-once).
    this.worker.on('completed', (job: Job, result: unknown) => {
      this.poisonWatch.settled(job.id);
      this.release(job);
      if (wasErased(result)) void this.forgetErasedJob(job);
      else if (job.name !== InferenceJobName.Classify) void this.forgetIfErasedMeanwhile(job);
    });
    // A job that failed for good (no retry left, or bad input) needs its bytes no more either. BullMQ sets
    // finishedOn only when the failure is final; a failure that will be retried keeps the bytes.
    this.worker.on('failed', (job: Job | undefined, error: Error | undefined) => {
      if (!job) return;
      // Its holders died (or lost its lock) twice: counted against the job's image (poison images).
      if (isStalledTooOften(error?.message)) void this.poisonWatch.stalledTooOften(job);
      else this.poisonWatch.settled(job.id);
      if (job.finishedOn) this.release(job);
    });
    // This worker is alive and lost a job's lock: if it runs the image to its end, the image is not poison.
    this.worker.on('lockRenewalFailed', (jobIds: string[]) => this.poisonWatch.locksLapsed(jobIds));
    void this.worker.run().catch((error) => this.logger.error({ action: 'worker.run_failed', err: error }, 'worker stopped'));
    this.lastActivityAt = Date.now();
    this.watchdog.watch(this.worker, { running: () => this.running, lastActivityAt: () => this.lastActivityAt });
    // Readiness and /v1/models see the loaded models now, not one heartbeat interval later.
    await this.heartbeat.beatNow();
    this.logger.info({ action: 'worker.ready', workerId, queue: INFERENCE_QUEUE, concurrency: this.worker.concurrency }, 'worker consuming');
  }

  private readonly redisTrouble = new LogThrottle();
  private readonly locksLost = new LogThrottle();

  /**
   * BullMQ retries fetching the next job at once after a Redis reply such as OOM (a full Redis): one error per
   * round trip. Those are logged as one warning every 10 s with the number left out, not hundreds of error lines.
   * An outage also costs the worker its hold on every job it was running (jobLockLost: one or two errors per job,
   * up to WORKER_CONCURRENCY at once, when Redis answers again): one `worker.job_lock_lost` warning per 10 s.
   */
  private logWorkerError(error: Error): void {
    const tryLater = redisTryLater(error);
    if (tryLater) {
      const repeatsSinceLast = this.redisTrouble.pass();
      if (repeatsSinceLast === undefined) return;
      return void this.logger.warn({ action: 'worker.redis_unavailable', reason: tryLater.reason, repeatsSinceLast, err: error }, `Redis ${tryLater.reason}; the worker keeps trying`);
    }
    if (jobLockLost(error)) {
      const jobId = lockLostJobId(error);
      if (jobId !== undefined) void this.poisonWatch.lockLostOnFinish(jobId);
      const repeatsSinceLast = this.locksLost.pass();
      if (repeatsSinceLast === undefined) return;
      return void this.logger.warn(
        { action: 'worker.job_lock_lost', repeatsSinceLast, err: error },
        "a job's lock or record in Redis was gone (Redis frozen or unreachable past LOCK_DURATION_MS, or restarted without its data): the stalled-job check runs it again if its record remains",
      );
    }
    this.logger.error({ action: 'worker.error', err: error }, 'worker error');
  }

  /**
   * A job that ran while its image was erased wrote nothing back, but BullMQ has just recorded it: a completed
   * job record (its data names the tenant and the image) and a `completed` entry in the queue's event stream
   * (its id is derived from them). The erasure removed both for jobs it could see; this removes what the
   * running job added after it, so nothing left in Redis says the image was ever there. The entry is among the
   * newest, so only the last ERASED_EVENTS_SCAN entries are read (bounded whatever the stream's length).
   */
  private async forgetErasedJob(job: Job): Promise<void> {
    try {
      // Image jobs leave Redis as they complete (removeOnComplete): then BullMQ finds nothing to remove and throws.
      await job.remove().catch(() => undefined);
      const client = this.redis;
      const events = this.worker.keys.events;
      const recent = (await client.xrevrange(events, '+', '-', 'COUNT', ERASED_EVENTS_SCAN)) as StreamEntry[];
      const naming = entriesNamingJobs(recent, new Set([String(job.id)]));
      if (naming.length > 0) await client.xdel(events, ...naming);
      this.logger.info({ action: 'job.erased_forgotten', jobId: job.id, requestId: job.data?.requestId, tenant: job.data?.tenant, removedEvents: naming.length }, "an erased image's finished job and its events removed");
    } catch (error) {
      this.logger.warn({ action: 'job.erased_forget_failed', jobId: job.id, err: error }, "an erased image's finished job record stays until its retention ends");
    }
  }

  /**
   * An image job that wrote its result just before an erasure, and completed just after the erasure cleared
   * the queue's events: its `completed` entry came too late for the erasure's own sweeps. One EXISTS on the
   * image's record per finished image job; gone means erased meanwhile, and the job is forgotten too. (The
   * erasure sweeps the events again after deleting the record, so every order of the two is covered.)
   */
  private async forgetIfErasedMeanwhile(job: Job): Promise<void> {
    const { tenant, imageHash } = (job.data ?? {}) as { tenant?: TenantId; imageHash?: string };
    if (!tenant || !imageHash) return;
    const exists = await this.results.hasImage(tenant, imageHash).catch(() => true);
    if (!exists) await this.forgetErasedJob(job);
  }

  private release(job: Job): void {
    const released = job.name === InferenceJobName.ClassifyBatch ? this.images.releaseBlobs(ClassifyBatchHandler.blobKeys(job.data)) : this.images.release(job.data?.image);
    released.catch((error) => this.logger.warn({ action: 'job.release_failed', jobId: job.id, err: error }, 'image bytes left to their TTL'));
  }

  /**
   * First step of a shutdown: take no new jobs and let the running ones (the current batch) finish, while
   * models and Redis are still there. Nothing is left active, so nothing stalls.
   */
  async beforeApplicationShutdown(): Promise<void> {
    const started = Date.now();
    await this.worker.close();
    this.logger.info({ action: 'worker.closed', workerId, ms: Date.now() - started }, 'worker finished its jobs and stopped consuming');
  }

  async process(job: Job): Promise<unknown> {
    this.running++;
    this.lastActivityAt = Date.now();
    try {
      return await this.run(job);
    } finally {
      this.running--;
      this.lastActivityAt = Date.now();
    }
  }

  private async run(job: Job): Promise<unknown> {
    const startedAt = Date.now();
    const batch = job.name === InferenceJobName.ClassifyBatch;
    const context = { jobId: job.id, jobName: job.name, requestId: job.data?.requestId, tenant: job.data?.tenant, model: job.data?.model, imageHash: job.data?.imageHash, ...(batch ? { items: job.data?.items?.length } : {}), attempt: job.attemptsMade + 1, workerId };
    this.logger.info({ action: 'job.started', ...context, queuedMs: startedAt - (job.data?.enqueuedAt ?? startedAt) }, 'job started');
    // A classify-batch job names its tenants per item (a coalesced job mixes tenants, as an ONNX batch does).
    if (!job.name || !job.data || typeof job.data !== 'object' || !(batch ? Array.isArray(job.data.items) : job.data.tenant)) {
      // A record without its name or data (keys evicted under memory pressure, a damaged hash): nothing to run.
      this.metrics.jobs.inc({ name: job.name || 'unknown', outcome: 'failed' });
      this.logger.error({ action: 'job.record_incomplete', ...context, fields: Object.keys(job.data ?? {}) }, "the job's record in Redis is incomplete (evicted or damaged); failed without running");
      throw new UnrecoverableError(encodeJobError(new AppError(ErrorCode.InferenceFailed, "the job's record in Redis is incomplete (was Redis evicting keys?)")));
    }
    let ran = false;
    try {
      // A job back after its holder's lock lapsed, for a poison image: refused before its image is read.
      await this.poisonWatch.starting(job);
      ran = true;
      if (typeof job.data?.deadlineAt === 'number' && startedAt > job.data.deadlineAt) {
        // Synchronous jobs only: analysis jobs carry no deadline, their results are fetched later.
        throw new AppError(ErrorCode.DeadlineExceeded, 'the client stopped waiting for this job before a worker reached it');
      }
      let result: unknown;
      switch (job.name) {
        case InferenceJobName.Classify:
          result = await this.classify.handle(job as Job<ClassifyJobData>, startedAt);
          break;
        case InferenceJobName.ClassifyBatch:
          result = await this.classifyBatch.handle(job as Job<ClassifyBatchJobData>, startedAt);
          break;
        case InferenceJobName.Analyze:
          result = await this.analyze.handle(job as Job<AnalyzeJobData>);
          break;
        case InferenceJobName.MatchFaces:
          result = await this.matchFaces.handle(job as Job<MatchFacesJobData>);
          break;
        default:
          throw new AppError(ErrorCode.Internal, `no handler for job name "${job.name}"`);
      }
      await this.poisonWatch.ended(job, { result });
      this.metrics.jobs.inc({ name: job.name, outcome: 'completed' });
      this.logger.info({ action: 'job.completed', ...context, ms: Date.now() - startedAt, batchSize: (result as { batchSize?: number }).batchSize }, 'job completed');
      return result;
    } catch (error) {
      if (ran) await this.poisonWatch.ended(job, { error });
      const encoded = encodeJobError(error);
      this.metrics.jobs.inc({ name: job.name, outcome: 'failed' });
      this.logger.warn({ action: 'job.failed', ...context, ms: Date.now() - startedAt, error: encoded }, 'job failed');
      // Bad input will not get better on retry; infrastructure errors (Redis, the image store, a crashed thread) may.
      if (error instanceof AppError && !RETRYABLE.has(error.code)) throw new UnrecoverableError(encoded);
      throw new Error(encoded);
    }
  }
}

/**
 * Sets the job lock's length (LOCK_DURATION_MS), its renewal (every half of it, BullMQ's own rule) and the stalled-job
 * check (STALLED_INTERVAL_MS) on a worker built by @nestjs/bullmq's explorer, whose options come from the static
 * @Processor decorator, so the validated environment can only be applied once the worker exists and before it runs.
 * BullMQ's constructor copies the renewal settings into its lock manager, so setting `opts` alone left locks of
 * LOCK_DURATION_MS renewed on BullMQ's 30 s schedule (checked every 7.5 s, extended by 30 s): every job active
 * longer than the lock was taken for stalled, run again, and failed after two (red-team: 120 of 300 requests of one
 * burst). The lock manager is therefore made again from the new options, through the hook BullMQ documents for
 * subclasses (`createLockManager`). Must run before worker.run().
 */
export function applyLockTiming(worker: Worker, lockDurationMs: number, stalledIntervalMs: number): void {
  worker.opts.lockDuration = lockDurationMs;
  worker.opts.lockRenewTime = lockDurationMs / 2;
  worker.opts.stalledInterval = stalledIntervalMs;
  (worker as unknown as { createLockManager(): void }).createLockManager();
}
