import { Inject, Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import pLimit from 'p-limit';
import { AppConfig } from '@app/config';
import { AppError, ClassifyBatchItemOutcome, ClassifyBatchJobData, ClassifyBatchJobResult, classifyItemId, decodeJobError, encodeJobError, ErrorCode } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { ImageInference } from '../inference/image-inference';
import { ImageSource } from '../inference/image-source';
import { ModelHost } from '../inference/model-host';
import { classifyResult } from './classify.handler';
import { workerId } from '../worker-id';

/** Item failures a later attempt of the whole job may not repeat (the worker's RETRYABLE, for one item). */
const RETRYABLE_ITEM: ReadonlySet<string> = new Set([ErrorCode.InputExpired, ErrorCode.ServiceUnavailable, ErrorCode.InferenceFailed, ErrorCode.Internal]);

/**
 * classify-batch jobs: several requests' images for one model, coalesced by an API. Their bytes come in one MGET,
 * then every item goes through ImageInference at once, so they land in the same ONNX batch(es). Each item has its
 * own outcome: a corrupt image or a passed deadline fails only its item. The job itself fails (and is retried as a
 * whole: classification is a pure function of the image) only when every item failed for a reason a retry may cure.
 */
@Injectable()
export class ClassifyBatchHandler {
  /**
   * Items decoded and run at once across all classify-batch jobs of this worker: WORKER_CONCURRENCY, as many images
   * as single jobs may hold. BullMQ's concurrency counts jobs, and a coalesced job carries up to 8 images: without
   * this a burst of coalesced jobs held 8× the images (their decoded tensors; +150 MB of worker RSS in the memory
   * bench's 1,000-request burst).
   */
  private readonly itemSlots: ReturnType<typeof pLimit>;

  constructor(
    private readonly models: ModelHost,
    private readonly inference: ImageInference,
    private readonly images: ImageSource,
    config: AppConfig,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {
    this.itemSlots = pLimit(config.values.WORKER_CONCURRENCY);
  }

  async handle(job: Job<ClassifyBatchJobData>, startedAt: number): Promise<ClassifyBatchJobResult> {
    const { model: modelName, items } = job.data;
    if (!Array.isArray(items) || items.length === 0) throw new AppError(ErrorCode.InferenceFailed, 'the coalesced job holds no items');
    const model = this.models.catalog.get(modelName, 'classification');
    const live = items.map((item) => !(typeof item.deadlineAt === 'number' && startedAt > item.deadlineAt));
    const keys = items.map((item, i) => (live[i] && item.image?.kind === 'blob' ? item.image.key : undefined));
    const wanted = keys.filter((key): key is string => key !== undefined);
    // Every item is announced to the batcher before the one read returns (inferImage), so they batch together.
    const read = this.images.readBlobs(wanted).then((values) => new Map(wanted.map((key, i) => [key, values[i]])));
    read.catch(() => undefined);
    const outcomes = await Promise.all(
      items.map((item, i): Promise<ClassifyBatchItemOutcome> => this.itemSlots(async () => {
        const itemStarted = Date.now();
        const context = { jobId: classifyItemId(String(job.id), i), batchJobId: job.id, requestId: item.requestId, tenant: item.tenant, model: model.name, workerId };
        try {
          if (!live[i]) throw new AppError(ErrorCode.DeadlineExceeded, 'the client stopped waiting for this request before a worker reached it');
          const key = keys[i];
          const readBytes = async () => {
            const bytes = key === undefined ? null : (await read).get(key);
            if (!bytes) throw new AppError(ErrorCode.InputExpired, 'the image of this request has expired before a worker reached it');
            return bytes;
          };
          const result = classifyResult(model, await this.inference.runBytes(model, readBytes), item.topk, startedAt, item.enqueuedAt);
          this.logger.info({ action: 'job.item_completed', ...context, ms: Date.now() - itemStarted, batchSize: result.batchSize }, 'coalesced item completed');
          return { result };
        } catch (error) {
          const encoded = encodeJobError(error);
          this.logger.warn({ action: 'job.item_failed', ...context, ms: Date.now() - itemStarted, error: encoded }, 'coalesced item failed');
          return { error: encoded };
        }
      })),
    );
    const codes = outcomes.map((outcome) => ('error' in outcome ? decodeJobError(outcome.error).code : undefined));
    if (codes.every((code) => code !== undefined && RETRYABLE_ITEM.has(code))) {
      const first = decodeJobError((outcomes[0] as { error: string }).error);
      throw new AppError(first.code, first.message);
    }
    return { items: outcomes };
  }

  /** The bytes keys of a classify-batch job's items (for their release once the job has its final outcome). */
  static blobKeys(data: ClassifyBatchJobData | undefined): string[] {
    return (data?.items ?? []).flatMap((item) => (item?.image?.kind === 'blob' ? [item.image.key] : []));
  }
}

