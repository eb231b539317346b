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
 * analyze jobs: one model on one stored image; the result goes to the result store under (hash, model).
 * Idempotent: a result already there (a redelivered job, or a racing resubmission) is not recomputed.
 * Bad input is remembered as a failure for FAILED_RESULT_TTL_SECONDS.
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
    const { imageHash, model: modelName } = job.data;
    const existing = await this.results.getResult(imageHash, modelName);
    if (existing) {
      this.logger.info({ action: 'analysis.reused', jobId: job.id, imageHash, model: modelName }, 'result already stored; not recomputed');
      return { state: existing.state, batchSize: 0, reused: true };
    }
    const model = this.models.catalog.get(modelName);
    const env = this.config.values;
    try {
      const { result, batchSize, inferenceMs } = await this.compute(model, { kind: 'store', hash: imageHash });
      const record: AnalysisRecord = {
        state: 'completed',
        model: model.name,
        task: model.task,
        result,
        computedAt: new Date().toISOString(),
        workerId,
        inferenceMs: Math.round(inferenceMs * 100) / 100,
      };
      await this.results.putResult(imageHash, record, env.RESULT_TTL_SECONDS);
      this.logger.info({ action: 'analysis.stored', jobId: job.id, requestId: job.data.requestId, imageHash, model: model.name }, 'analysis result stored');
      return { state: 'completed', batchSize, reused: false };
    } catch (error) {
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
        await this.results.putResult(imageHash, record, env.FAILED_RESULT_TTL_SECONDS);
      }
      throw error;
    }
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
