import { Inject, Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AnalysisRecord, AnalyzeJobData, AppError, ImageRef } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { CatalogModel, postprocess } from '@app/models';
import { AnalysisStore } from '@app/storage';
import { ImageInference } from '../inference/image-inference';
import { ModelHost } from '../inference/model-host';
import { workerId } from '../worker-id';

/**
 * analyze jobs: one model on one tenant's stored image; the result goes to that tenant's result store under
 * (hash, model). Idempotent: a result already there (a redelivered job, or a racing resubmission) is not
 * recomputed. Bad input is remembered as a failure for FAILED_RESULT_TTL_SECONDS. An image erased before or
 * while the job runs ends the job quietly, with nothing written back.
 */
@Injectable()
export class AnalyzeHandler {
  constructor(
    private readonly models: ModelHost,
    private readonly inference: ImageInference,
    private readonly results: AnalysisStore,
    private readonly config: AppConfig,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async handle(job: Job<AnalyzeJobData>): Promise<{ state: string; batchSize: number; reused: boolean }> {
    const { tenant, imageHash, model: modelName } = job.data;
    const existing = await this.results.getResult(tenant, imageHash, modelName);
    if (existing) {
      this.logger.info({ action: 'analysis.reused', jobId: job.id, tenant, imageHash, model: modelName }, 'result already stored; not recomputed');
      return { state: existing.state, batchSize: 0, reused: true };
    }
    if (!(await this.results.hasImage(tenant, imageHash))) return this.erased(job);
    const model = this.models.catalog.get(modelName);
    const env = this.config.values;
    try {
      const { result, batchSize, inferenceMs } = await this.compute(model, { kind: 'store', tenant, hash: imageHash });
      const record: AnalysisRecord = {
        state: 'completed',
        model: model.name,
        task: model.task,
        result,
        computedAt: new Date().toISOString(),
        workerId,
        inferenceMs: Math.round(inferenceMs * 100) / 100,
      };
      if (!(await this.results.putResult(tenant, imageHash, record, env.RESULT_TTL_SECONDS))) return this.erased(job);
      this.logger.info({ action: 'analysis.stored', jobId: job.id, requestId: job.data.requestId, tenant, imageHash, model: model.name }, 'analysis result stored');
      return { state: 'completed', batchSize, reused: false };
    } catch (error) {
      if (!(await this.results.hasImage(tenant, imageHash))) return this.erased(job);
      if (error instanceof AppError) {
        // Input that cannot be analysed will not improve on retry: remember the answer for a while.
        const record: AnalysisRecord = {
          state: 'failed',
          model: model.name,
          task: model.task,
          error: { code: error.code, message: error.message },
          computedAt: new Date().toISOString(),
          workerId,
        };
        await this.results.putResult(tenant, imageHash, record, env.FAILED_RESULT_TTL_SECONDS);
      }
      throw error;
    }
  }

  private erased(job: Job<AnalyzeJobData>): { state: string; batchSize: number; reused: boolean } {
    this.logger.info({ action: 'analysis.skipped_erased', jobId: job.id, requestId: job.data.requestId, tenant: job.data.tenant, imageHash: job.data.imageHash }, 'image erased; nothing computed or written');
    return { state: 'erased', batchSize: 0, reused: false };
  }

  /** Face detectors run both passes of the face pipeline (the same faces as POST /v1/faces); other models one batched run. */
  private async compute(model: CatalogModel, ref: ImageRef): Promise<{ result: unknown; batchSize: number; inferenceMs: number }> {
    if (model.task === 'face-detection') {
      const started = performance.now();
      return { result: { faces: await this.inference.detectFaces(model, ref) }, batchSize: 1, inferenceMs: performance.now() - started };
    }
    const { input, run } = await this.inference.run(model, ref);
    return { result: postprocess(model, run.output, input.geometry), batchSize: run.batchSize, inferenceMs: run.batchMs };
  }
}
