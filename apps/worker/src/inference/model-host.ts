import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import type { Logger } from 'pino';
import sharp from 'sharp';
import { AppConfig } from '@app/config';
import { APP_LOGGER } from '@app/logging';
import { InferenceRuntime, ModelCatalog, ModelExecutor } from '@app/models';
import { WorkerMetrics } from '../ops/worker-metrics';

/**
 * Owns the worker's models: verifies every weight file's sha256, loads each session once in the
 * inference threads and exposes the batching executor. `start()` runs before the queue is consumed.
 */
@Injectable()
export class ModelHost implements OnApplicationShutdown {
  private runtime?: InferenceRuntime;
  private executorInstance?: ModelExecutor;
  readonly catalog: ModelCatalog;

  constructor(
    private readonly config: AppConfig,
    private readonly metrics: WorkerMetrics,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {
    const env = config.values;
    this.catalog = ModelCatalog.load(env.MODELS_DIR, { maxBatchSize: env.MAX_BATCH_SIZE, maxBatchDelayMs: env.MAX_BATCH_DELAY_MS });
  }

  async start(): Promise<void> {
    const env = this.config.values;
    // libvips threads per image; images themselves decode in parallel on libuv's pool.
    sharp.concurrency(env.SHARP_CONCURRENCY);
    // Every request brings a new image: libvips' operation cache would only hold memory.
    sharp.cache(false);
    const started = performance.now();
    await this.catalog.verifyWeights();
    this.runtime = await InferenceRuntime.start(this.catalog, { threads: env.INFERENCE_THREADS, intraOpThreads: env.ORT_INTRA_OP_THREADS, allowSpinning: env.ORT_ALLOW_SPINNING });
    this.executorInstance = new ModelExecutor(this.catalog, this.runtime, (model, size, seconds) => this.metrics.observeBatch(model, size, seconds));
    for (const model of this.catalog.list()) {
      this.logger.info(
        { action: 'model.loaded', model: model.name, file: model.file, sha256: model.sha256, maxBatchSize: model.maxBatchSize, maxBatchDelayMs: model.maxBatchDelayMs },
        `model ${model.name} verified and loaded`,
      );
    }
    this.logger.info(
      { action: 'models.ready', ms: Math.round(performance.now() - started), inferenceThreads: env.INFERENCE_THREADS, ortIntraOpThreads: env.ORT_INTRA_OP_THREADS, ortAllowSpinning: env.ORT_ALLOW_SPINNING, sharpConcurrency: env.SHARP_CONCURRENCY },
      'all models ready',
    );
  }

  get executor(): ModelExecutor {
    if (!this.executorInstance) throw new Error('models are not loaded yet');
    return this.executorInstance;
  }

  get loadedModels(): string[] {
    return this.executorInstance ? this.catalog.names : [];
  }

  /** Last: the queue worker has already finished its jobs (beforeApplicationShutdown). */
  async onApplicationShutdown(): Promise<void> {
    await this.runtime?.close();
  }
}
