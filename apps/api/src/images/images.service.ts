import { Inject, Injectable } from '@nestjs/common';
import { AnalysisRecord, AnalysisState, AppError, ErrorCode, ImageMetadata } from '@app/contracts';
import { AnalysisStore, CONTENT_STORE, ContentStore } from '@app/storage';
import { detectImageFormat } from '@app/imaging';
import { requireImageHash } from '../common/image-hash';
import { AppConfig } from '@app/config';
import { ModelDirectory } from '../models/model-directory';
import { AnalysisJobs } from '../analyses/analysis-jobs';
import { ImageEventsHub } from './image-events.hub';

export interface ModelView {
  state: AnalysisState;
  url: string;
  result?: unknown;
  error?: { code: string; message: string };
  computedAt?: string;
}

export type ResultLookup = { kind: 'ready'; record: AnalysisRecord } | { kind: 'pending'; state: AnalysisState };

/** Reading analyses back by image hash, including following them as they finish. */
@Injectable()
export class ImagesService {
  constructor(
    private readonly results: AnalysisStore,
    private readonly pairs: AnalysisJobs,
    private readonly directory: ModelDirectory,
    private readonly hub: ImageEventsHub,
    private readonly config: AppConfig,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
  ) {}

  async describe(hash: string): Promise<{ image: ImageMetadata; models: Record<string, ModelView> }> {
    requireImageHash(hash);
    const image = await this.results.getImage(hash);
    if (!image) throw new AppError(ErrorCode.NotFound, `no image ${hash}`);
    const models = await this.results.modelsOf(hash);
    const records = await this.results.getResults(hash, models);
    const views: Record<string, ModelView> = {};
    for (const model of models) {
      const record = records.get(model);
      views[model] = record ? viewOf(hash, record) : { state: await this.pairs.peek(hash, model), url: AnalysisJobs.resultUrl(hash, model) };
    }
    return { image, models: views };
  }

  /** The stored bytes of an image and their format (checked by its header when stored). */
  async content(hash: string): Promise<{ bytes: Buffer; format: string }> {
    requireImageHash(hash);
    const bytes = await this.store.get(hash);
    const format = bytes && (await detectImageFormat(bytes));
    if (!bytes || !format) throw new AppError(ErrorCode.NotFound, `no stored image ${hash}`);
    return { bytes, format };
  }

  /** One model's result; an expired or never-run pair of a stored image is queued again. */
  async result(hash: string, model: string, requestId: string): Promise<ResultLookup> {
    requireImageHash(hash);
    this.directory.catalog.get(model);
    const record = await this.results.getResult(hash, model);
    if (record) return { kind: 'ready', record };
    if (!(await this.store.has(hash))) throw new AppError(ErrorCode.NotFound, `no image ${hash}`);
    const meta = await this.results.getImage(hash);
    if (meta) await this.results.registerImage(meta, [model]);
    const status = await this.pairs.ensure(hash, model, requestId);
    const now = await this.results.getResult(hash, model);
    return now ? { kind: 'ready', record: now } : { kind: 'pending', state: status.state };
  }

  /**
   * Calls `emit` once per model as each finishes (those already finished first), then resolves. Woken by
   * pub/sub, with polling every second as the backup; gives up after SSE_MAX_MS or when `closed` says so.
   */
  async follow(hash: string, requestId: string, emit: (model: string, view: ModelView) => void, closed: () => boolean): Promise<'done' | 'timeout' | 'closed'> {
    requireImageHash(hash);
    if (!(await this.results.getImage(hash))) throw new AppError(ErrorCode.NotFound, `no image ${hash}`);
    const pending = new Set(await this.results.modelsOf(hash));
    let wake: () => void = () => undefined;
    const stop = await this.hub.listen(this.results.eventsChannel(hash), () => wake());
    const deadline = Date.now() + this.config.values.SSE_MAX_MS;
    try {
      let first = true;
      while (pending.size > 0) {
        if (closed()) return 'closed';
        if (Date.now() > deadline) return 'timeout';
        const records = await this.results.getResults(hash, [...pending]);
        for (const [model, record] of records) {
          pending.delete(model);
          emit(model, viewOf(hash, record));
        }
        if (first) {
          // Expired or never-queued pairs would otherwise never finish.
          for (const model of pending) await this.pairs.ensure(hash, model, requestId);
          first = false;
        }
        if (pending.size === 0) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return 'done';
    } finally {
      stop();
    }
  }
}

function viewOf(hash: string, record: AnalysisRecord): ModelView {
  const url = AnalysisJobs.resultUrl(hash, record.model);
  return record.state === 'completed'
    ? { state: 'completed', url, result: record.result, computedAt: record.computedAt }
    : { state: 'failed', url, error: record.error, computedAt: record.computedAt };
}
