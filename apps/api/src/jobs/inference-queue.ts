import { Inject, Injectable } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import { Job, Queue } from 'bullmq';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { AppError, ClassifyBatchItem, ClassifyBatchJobData, ClassifyJobData, decodeJobError, ErrorCode, INFERENCE_QUEUE, InferenceJobName, isImageFault, JobPriority, JobState, RedisKeys } from '@app/contracts';
import { jobRetention, logQueueErrors, REDIS_CLIENT } from '@app/redis';
import { APP_LOGGER } from '@app/logging';
import type { Logger } from 'pino';

/** The API's seam to the inference queue: puts work on it and reads job state back. */
@Injectable()
export class InferenceQueue {
  constructor(
    @InjectQueue(INFERENCE_QUEUE) readonly queue: Queue,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly config: AppConfig,
    @Inject(APP_LOGGER) logger: Logger,
  ) {
    // Without a listener BullMQ prints each of the Queue's connection errors to stderr (console.error).
    logQueueErrors(queue, logger, { action: 'queue.error', what: 'the inference queue' });
  }

  private depthCache = { value: 0, at: 0 };

  /** Jobs waiting for a worker (read at most every 100 ms: this runs on every submission). */
  async waitingDepth(): Promise<number> {
    if (Date.now() - this.depthCache.at > 100) {
      const counts = await this.queue.getJobCounts('wait', 'prioritized');
      this.depthCache = { value: Object.values(counts).reduce((a, b) => a + b, 0), at: Date.now() };
    }
    return this.depthCache.value;
  }

  /** Back-pressure: refuse new work at once instead of letting the queue grow without bound. */
  async assertCapacity(): Promise<void> {
    const depth = await this.waitingDepth();
    const limit = this.config.values.MAX_QUEUE_DEPTH;
    if (depth >= limit) {
      throw new AppError(ErrorCode.QueueFull, `the queue holds ${depth} waiting jobs (limit ${limit}); try again shortly`, { retryAfterSeconds: 2 });
    }
  }

  /** Stores the bytes under a short-lived key and queues the job (the job itself stays small in Redis). */
  async enqueueClassify(jobId: string, bytes: Buffer, data: Omit<ClassifyJobData, 'image'>): Promise<void> {
    await this.assertCapacity();
    const key = this.keys.blob(jobId);
    await this.redis.set(key, bytes, 'EX', this.config.values.BLOB_TTL_SECONDS);
    const payload: ClassifyJobData = { ...data, image: { kind: 'blob', key } };
    await this.queue.add(InferenceJobName.Classify, payload, { ...jobRetention(this.config.values), jobId, priority: JobPriority.Interactive });
  }

  /**
   * Several classify requests for one model as one classify-batch job (see ClassifyCoalescer): each item's bytes
   * under its own short-lived key, all SET in one pipeline (one Cluster slot: RedisKeys.batchBlob), then one add.
   * The caller checked the queue's capacity when each request joined.
   */
  async enqueueClassifyBatch(jobId: string, model: string, items: { bytes: Buffer; data: Omit<ClassifyBatchItem, 'image'> }[]): Promise<void> {
    const ttl = this.config.values.BLOB_TTL_SECONDS;
    const pipeline = this.redis.pipeline();
    const payload: ClassifyBatchJobData = {
      model,
      items: items.map(({ bytes, data }, index) => {
        const key = this.keys.batchBlob(jobId, index);
        pipeline.set(key, bytes, 'EX', ttl);
        return { ...data, image: { kind: 'blob', key } };
      }),
    };
    for (const [error] of (await pipeline.exec()) ?? []) if (error) throw error;
    await this.queue.add(InferenceJobName.ClassifyBatch, payload, { ...jobRetention(this.config.values), jobId, priority: JobPriority.Interactive });
  }

  /** A classify-batch job every client of which hung up: removed with its items' bytes unless a worker holds it. */
  async dropAbandonedBatch(jobId: string, size: number): Promise<boolean> {
    const removed = (await this.queue.remove(jobId)) === 1;
    if (removed) await this.redis.del(...Array.from({ length: size }, (_, index) => this.keys.batchBlob(jobId, index)));
    return removed;
  }

  /** The bytes of one item of a classify-batch job that has its final outcome (the worker deletes them too). */
  async releaseItemBlob(jobId: string, index: number): Promise<void> {
    await this.redis.del(this.keys.batchBlob(jobId, index));
  }

  /**
   * A classify job whose client hung up before a worker took it: removed with its bytes, so no worker runs it for
   * nobody. Returns false when a worker holds it already (BullMQ does not remove a locked job): it runs to the end.
   */
  async dropAbandoned(jobId: string): Promise<boolean> {
    const removed = (await this.queue.remove(jobId)) === 1;
    if (removed) await this.releaseBlob(jobId);
    return removed;
  }

  /** The short-lived bytes of a classify job that has its final outcome (the worker deletes them too; DEL is idempotent). */
  async releaseBlob(jobId: string): Promise<void> {
    await this.redis.del(this.keys.blob(jobId));
  }

  /**
   * Adds a job whose id is derived from what it works on, so adding it again while it exists joins it
   * (BullMQ ignores an add with an existing id). Its result lives in a store of its own, so the job leaves
   * Redis when it completes; a failure stays for `keepFailedSeconds` (0: leaves at once) to be read back. A kept
   * failure answers for the image only when it is a property of the image (isImageFault): a failed job kept for
   * anything else (a worker without the image store, Redis trouble) is removed first, so the work runs again.
   */
  async addDeduplicated(name: InferenceJobName, data: object, jobId: string, priority: number, keepFailedSeconds: number): Promise<void> {
    if (keepFailedSeconds > 0 && (await this.getStateById(jobId)) === 'failed') {
      const failed = await this.getJob(jobId);
      if (failed && !isImageFault(decodeJobError(failed.failedReason).code)) await this.queue.remove(jobId);
    }
    await this.queue.add(name, data, {
      ...jobRetention(this.config.values),
      jobId,
      priority,
      removeOnComplete: true,
      removeOnFail: keepFailedSeconds > 0 ? { age: keepFailedSeconds, count: this.config.values.FAILED_JOB_MAX_COUNT } : true,
    });
  }

  /**
   * The job, or undefined when it does not exist or its record is damaged beyond reading (BullMQ cannot parse
   * its JSON fields: a hash evicted and partly written again, say). Fields may still be missing from a job
   * returned here; callers read every field as optional.
   */
  async getJob(jobId: string): Promise<Job | undefined> {
    try {
      return (await this.queue.getJob(jobId)) ?? undefined;
    } catch (error) {
      if (error instanceof SyntaxError) return undefined;
      throw error;
    }
  }

  async getStateById(jobId: string): Promise<JobState> {
    return toJobState(await this.queue.getJobState(jobId));
  }
}

/** BullMQ has more states than clients need to know. */
export function toJobState(state: string): JobState {
  switch (state) {
    case 'completed':
    case 'failed':
    case 'active':
      return state;
    case 'waiting':
    case 'prioritized':
    case 'delayed':
    case 'waiting-children':
      return 'waiting';
    default:
      return 'unknown';
  }
}
