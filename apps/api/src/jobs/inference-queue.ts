import { Inject, Injectable } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import { Job, JobsOptions, Queue } from 'bullmq';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { AppError, ClassifyJobData, ErrorCode, INFERENCE_QUEUE, InferenceJobName, JobPriority, JobState, RedisKeys } from '@app/contracts';
import { REDIS_CLIENT } from '@app/redis';

/** The API's seam to the inference queue: puts work on it and reads job state back. */
@Injectable()
export class InferenceQueue {
  constructor(
    @InjectQueue(INFERENCE_QUEUE) readonly queue: Queue,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly config: AppConfig,
  ) {}

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
    await this.queue.add(InferenceJobName.Classify, payload, { ...this.retention(), jobId, priority: JobPriority.Interactive });
  }

  /**
   * Adds a job whose id is derived from what it works on, so adding it again while it exists joins it
   * (BullMQ ignores an add with an existing id). Its result lives in a store of its own, so the job leaves
   * Redis when it completes; a failure stays for `keepFailedSeconds` (0: leaves at once) to be read back.
   */
  async addDeduplicated(name: InferenceJobName, data: object, jobId: string, priority: number, keepFailedSeconds: number): Promise<void> {
    await this.queue.add(name, data, {
      ...this.retention(),
      jobId,
      priority,
      removeOnComplete: true,
      removeOnFail: keepFailedSeconds > 0 ? { age: keepFailedSeconds, count: this.config.values.FAILED_JOB_MAX_COUNT } : true,
    });
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    return (await this.queue.getJob(jobId)) ?? undefined;
  }

  async getStateById(jobId: string): Promise<JobState> {
    return toJobState(await this.queue.getJobState(jobId));
  }

  /** Every job is removed after its age/count limit so finished work never piles up in Redis. */
  private retention(): JobsOptions {
    const env = this.config.values;
    return {
      attempts: env.JOB_ATTEMPTS,
      backoff: { type: 'exponential', delay: 500 },
      removeOnComplete: { age: env.COMPLETED_JOB_TTL_SECONDS, count: env.COMPLETED_JOB_MAX_COUNT },
      removeOnFail: { age: env.FAILED_JOB_TTL_SECONDS, count: env.FAILED_JOB_MAX_COUNT },
    };
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
