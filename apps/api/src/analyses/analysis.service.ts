import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, ErrorCode, TenantId } from '@app/contracts';
import { inspectImage, ImageInfo } from '@app/imaging';
import { APP_LOGGER } from '@app/logging';
import { AnalysisStore, CONTENT_STORE, ContentStore } from '@app/storage';
import { ModelDirectory } from '../models/model-directory';
import { ApiMetrics } from '../ops/api-metrics';
import { AnalysisJobs, ModelStatus } from './analysis-jobs';
import { discardStaged, StagedImage } from '../uploads/staged-image';

export interface SubmittedImage {
  hash: string;
  models: Record<string, ModelStatus>;
}

interface StoredImage {
  hash: string;
  info: ImageInfo;
  /** This request wrote the bytes (the tenant had no copy), so a refusal later in the request removes them. */
  written: boolean;
}

/**
 * Many images × many models for one tenant: each image arrives staged on disk (streamed there, never whole in
 * memory), is checked from its header and adopted into the tenant's store, then, once every image and every
 * model name has passed, each image is registered and each pair queued once. A refusal anywhere leaves nothing
 * behind: staged files are removed, bytes this request adopted are removed again, nothing is registered or
 * queued.
 */
@Injectable()
export class AnalysisService {
  constructor(
    private readonly directory: ModelDirectory,
    private readonly pairs: AnalysisJobs,
    private readonly results: AnalysisStore,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
    private readonly config: AppConfig,
    private readonly metrics: ApiMetrics,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  /**
   * `modelFields` as repeated fields and/or comma lists: a list known before the images (checked before any
   * image is read), or a function read after them (multipart fields may follow the files).
   */
  async submit(tenant: TenantId, requestId: string, images: AsyncIterable<StagedImage>, modelFields: string[] | (() => string[])): Promise<SubmittedImage[]> {
    let models = Array.isArray(modelFields) ? this.parseModels(modelFields) : undefined;
    // Refuse before reading or storing anything when the queue is full.
    await this.pairs.assertCapacity();
    const stored: StoredImage[] = [];
    try {
      for await (const staged of images) stored.push(await this.checkAndAdopt(tenant, staged, stored.length));
      if (stored.length === 0) throw new AppError(ErrorCode.ImageMissing, 'no images in the request');
      models ??= this.parseModels((modelFields as () => string[])());
    } catch (error) {
      await this.discard(tenant, stored);
      throw error;
    }
    const firstSeen = new Date().toISOString();
    const answered = new Map<string, SubmittedImage>();
    for (const { hash, info, written } of stored) {
      if (answered.has(hash)) continue;
      await this.results.registerImage(tenant, { hash, bytes: info.bytes, format: info.format, width: info.width, height: info.height, firstSeen }, models);
      const statuses: Record<string, ModelStatus> = {};
      for (const model of models) statuses[model] = await this.pairs.ensure(tenant, hash, model, requestId);
      answered.set(hash, { hash, models: statuses });
      const cached = models.filter((m) => statuses[m].cached);
      this.metrics.cacheHits.inc({ kind: 'analysis' }, cached.length);
      this.logger.info({ action: 'analysis.submitted', requestId, tenant, imageHash: hash, newImage: written, models, cached }, 'image analysis submitted');
    }
    return stored.map(({ hash }) => answered.get(hash)!);
  }

  private async checkAndAdopt(tenant: TenantId, staged: StagedImage, index: number): Promise<StoredImage> {
    let info: ImageInfo;
    try {
      info = await inspectImage({ path: staged.path, bytes: staged.bytes }, this.config.imageLimits);
    } catch (error) {
      await discardStaged(staged);
      if (error instanceof AppError) throw new AppError(error.code, `image ${index + 1}: ${error.message}`, { imageIndex: index });
      throw error;
    }
    return { hash: staged.hash, info, written: await this.store.adopt(tenant, staged.hash, staged.path) };
  }

  /** Removes the bytes a refused request wrote, unless the tenant registered that image meanwhile. */
  private async discard(tenant: TenantId, stored: StoredImage[]): Promise<void> {
    for (const { hash, written } of stored) {
      if (written && !(await this.results.hasImage(tenant, hash).catch(() => true))) await this.store.remove(tenant, hash).catch(() => undefined);
    }
  }

  /** `models` as repeated fields and/or comma lists; every name must exist. */
  parseModels(fields: string[]): string[] {
    const names = [...new Set(fields.flatMap((field) => field.split(',')).map((name) => name.trim()).filter((name) => name.length > 0))];
    const valid = this.analysableModels();
    if (names.length === 0) throw new AppError(ErrorCode.InvalidParameter, `name at least one model in "models"; valid models: ${valid.join(', ')}`, { validModels: valid });
    this.assertAnalysable(...names);
    return names;
  }

  /**
   * Refuses models that an analysis cannot run, with the same 400 wherever models are named: unknown names,
   * and embedders (they need aligned faces, not whole images: they run inside POST /v1/faces).
   */
  assertAnalysable(...names: string[]): void {
    const valid = this.analysableModels();
    const unknown = names.filter((name) => !valid.includes(name));
    if (unknown.length > 0) {
      throw new AppError(ErrorCode.UnknownModel, `unknown model${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `"${n}"`).join(', ')}; valid models: ${valid.join(', ')}`, {
        unknownModels: unknown,
        validModels: valid,
      });
    }
  }

  private analysableModels(): string[] {
    return this.directory.catalog.list().filter((model) => model.task !== 'face-embedding').map((model) => model.name);
  }
}
