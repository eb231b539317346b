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
}

export type ClassifyOutcome =
  | { kind: 'completed'; jobId: string; result: ClassifyJobResult; totalMs: number }
  | { kind: 'failed'; jobId: string; error: ErrorBody }
  | { kind: 'pending'; jobId: string };

/** Synchronous classification: validate, queue one job, wait for its answer up to REQUEST_WAIT_MS. */
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
    const jobId = randomUUID();
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
      { action: 'job.enqueued', requestId: request.requestId, jobId, model: model.name, format: image.format, width: image.width, height: image.height, bytes: image.bytes },
      'classify job queued',
    );
    const outcome = await this.waiter.wait(jobId, env.REQUEST_WAIT_MS);
    const totalMs = Math.round((performance.now() - started) * 100) / 100;
    switch (outcome.state) {
      case 'completed':
        this.metrics.endToEnd.observe({ model: model.name }, totalMs / 1000);
        return { kind: 'completed', jobId, result: outcome.result as ClassifyJobResult, totalMs };
      case 'failed':
        return { kind: 'failed', jobId, error: outcome.error };
      case 'timeout':
        this.logger.info({ action: 'job.wait_timeout', requestId: request.requestId, jobId, waitMs: env.REQUEST_WAIT_MS }, 'answer not ready in time; client gets 202');
        return { kind: 'pending', jobId };
    }
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
