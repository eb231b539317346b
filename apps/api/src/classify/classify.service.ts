import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, ClassifyJobResult, ErrorBody, ErrorCode, TenantId, TOPK_DEFAULT, TOPK_MAX, TOPK_MIN } from '@app/contracts';
import { inspectImage } from '@app/imaging';
import { APP_LOGGER } from '@app/logging';
import { InferenceQueue } from '../jobs/inference-queue';
import { JobWaiter } from '../jobs/job-waiter';
import { ModelDirectory } from '../models/model-directory';
import { ApiMetrics } from '../ops/api-metrics';

export const DEFAULT_CLASSIFIER = 'mobilenet_v2';

export interface ClassifyRequest {
  requestId: string;
  tenant: TenantId;
  bytes: Buffer;
  model?: string;
  topk?: string | number;
  /** Fires when the client hangs up: its job, if no worker has taken it yet, is dropped. */
  signal?: AbortSignal;
}

export type ClassifyOutcome =
  | { kind: 'completed'; jobId: string; result: ClassifyJobResult; totalMs: number }
  | { kind: 'failed'; jobId: string; error: ErrorBody }
  | { kind: 'pending'; jobId: string }
  /** The client left before the answer; nobody can read the result (it never got the job id). */
  | { kind: 'abandoned'; jobId: string };

/**
 * Synchronous classification: validate, queue one job, wait for its answer up to REQUEST_WAIT_MS. The request
 * holds the image bytes until it is answered, so a job that vanishes from Redis meanwhile is queued once more;
 * a second loss is a 503. A job whose client hung up before a worker took it is dropped.
 */
@Injectable()
export class ClassifyService {
  constructor(
    private readonly jobs: InferenceQueue,
    private readonly waiter: JobWaiter,
    private readonly models: ModelDirectory,
    private readonly config: AppConfig,
    private readonly metrics: ApiMetrics,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async classify(request: ClassifyRequest): Promise<ClassifyOutcome> {
    const started = performance.now();
    const env = this.config.values;
    const model = this.models.catalog.get(request.model || DEFAULT_CLASSIFIER, 'classification');
    const topk = parseTopK(request.topk);
    const image = await inspectImage(request.bytes, this.config.imageLimits);
    const waitUntil = Date.now() + env.REQUEST_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      const jobId = randomUUID();
      // The waiter listens before the job exists, so its completion event cannot come first.
      const enqueue = async () => {
        const now = Date.now();
        await this.jobs.enqueueClassify(jobId, request.bytes, {
          requestId: request.requestId,
          tenant: request.tenant,
          model: model.name,
          topk,
          enqueuedAt: now,
          deadlineAt: now + env.JOB_DEADLINE_MS,
        });
        this.logger.info(
          { action: attempt === 1 ? 'job.enqueued' : 'job.requeued', requestId: request.requestId, jobId, model: model.name, format: image.format, width: image.width, height: image.height, bytes: image.bytes },
          attempt === 1 ? 'classify job queued' : 'classify job vanished from Redis; queued again',
        );
      };
      const outcome = await this.waiter.wait(jobId, Math.max(0, waitUntil - Date.now()), request.signal, { enqueue });
      switch (outcome.state) {
        case 'completed': {
          // The worker deletes the bytes once the job is recorded as completed (a worker killed just then
          // leaves them to BLOB_TTL_SECONDS): no second DEL from here.
          const totalMs = Math.round((performance.now() - started) * 100) / 100;
          this.metrics.endToEnd.observe({ model: model.name }, totalMs / 1000);
          return { kind: 'completed', jobId, result: outcome.result as ClassifyJobResult, totalMs };
        }
        case 'failed':
          void this.jobs.releaseBlob(jobId).catch(() => undefined);
          return { kind: 'failed', jobId, error: outcome.error };
        case 'timeout':
          this.logger.info({ action: 'job.wait_timeout', requestId: request.requestId, jobId, waitMs: env.REQUEST_WAIT_MS }, 'answer not ready in time; client gets 202');
          return { kind: 'pending', jobId };
        case 'abandoned':
          await this.abandon(jobId, request.requestId);
          return { kind: 'abandoned', jobId };
        case 'vanished':
          this.logger.warn({ action: 'job.vanished', requestId: request.requestId, jobId, attempt }, 'the queued job is no longer in Redis (restart without persistence, failover, flush)');
          if (attempt > 1) {
            throw new AppError(ErrorCode.ServiceUnavailable, 'the queued job was lost by the queue store (Redis) twice; try again shortly', { retryAfterSeconds: 2 });
          }
      }
    }
  }

  /** The client hung up: its job is dropped unless a worker already holds it (then it finishes, unread). */
  private async abandon(jobId: string, requestId: string): Promise<void> {
    const dropped = await this.jobs.dropAbandoned(jobId).catch(() => false);
    this.metrics.abandonedJobs.inc({ outcome: dropped ? 'dropped' : 'running' });
    this.logger.info({ action: 'job.abandoned', requestId, jobId, dropped }, dropped ? 'client left before a worker took the job: dropped' : 'client left while a worker runs the job');
  }
}

export function parseTopK(value: string | number | undefined): number {
  if (value === undefined || value === '') return TOPK_DEFAULT;
  const topk = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(topk) || topk < TOPK_MIN || topk > TOPK_MAX) {
    throw new AppError(ErrorCode.InvalidParameter, `topk must be a whole number from ${TOPK_MIN} to ${TOPK_MAX}, got "${value}"`);
  }
  return topk;
}
