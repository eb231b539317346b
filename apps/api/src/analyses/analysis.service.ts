import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, echoed, ErrorCode, TenantId } from '@app/contracts';
import { inspectImage, ImageInfo } from '@app/imaging';
import { APP_LOGGER } from '@app/logging';
import { AnalysisStore, CONTENT_STORE, ContentStore, ImageLocks } from '@app/storage';
import { ModelDirectory } from '../models/model-directory';
import { ApiMetrics } from '../ops/api-metrics';
import { AnalysisJobs, ModelStatus } from './analysis-jobs';
import { discardStaged, StagedImage } from '../uploads/staged-image';

export interface SubmittedImage {
  hash: string;
  models: Record<string, ModelStatus>;
}

/** An image staged on disk whose header passed: adopted into the store once the whole request has passed. */
interface CheckedImage {
  staged: StagedImage;
  info: ImageInfo;
}

/**
 * Many images × many models for one tenant: each image arrives staged on disk (streamed there, never whole in
 * memory) and is checked from its header; once every image and every model name has passed, each image's bytes
 * are adopted into the tenant's store and its metadata registered (together, under the image's lock), and each
 * pair queued once. A refusal anywhere leaves nothing behind: the staged files are removed, nothing is stored,
 * registered or queued.
 */
@Injectable()
export class AnalysisService {
  constructor(
    private readonly directory: ModelDirectory,
    private readonly pairs: AnalysisJobs,
    private readonly results: AnalysisStore,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
    private readonly locks: ImageLocks,
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
    const checked: CheckedImage[] = [];
    try {
      for await (const staged of images) checked.push(await this.check(staged, checked.length));
      if (checked.length === 0) throw new AppError(ErrorCode.ImageMissing, 'no images in the request');
      models ??= this.parseModels((modelFields as () => string[])());
    } catch (error) {
      await Promise.all(checked.map(({ staged }) => discardStaged(staged)));
      throw error;
    }
    const firstSeen = new Date().toISOString();
    const answered = new Map<string, SubmittedImage>();
    for (const { staged, info } of checked) {
      const hash = staged.hash;
      if (answered.has(hash)) {
        await discardStaged(staged);
        continue;
      }
      // Bytes and metadata together, so an erasure of the same image lands before both or after both.
      const written = await this.locks.withLock(tenant, hash, async () => {
        const adopted = await this.store.adopt(tenant, hash, staged.path);
        await this.results.registerImage(tenant, { hash, bytes: info.bytes, format: info.format, width: info.width, height: info.height, firstSeen }, models);
        // Before the 202: what Redis loses in a failover, the note beside the bytes still names (ImagesService.findImage).
        await this.store.noteModels(tenant, hash, models);
        return adopted;
      });
      const statuses: Record<string, ModelStatus> = {};
      for (const model of models) statuses[model] = await this.pairs.ensure(tenant, hash, model, requestId);
      answered.set(hash, { hash, models: statuses });
      const cached = models.filter((m) => statuses[m].cached);
      this.metrics.cacheHits.inc({ kind: 'analysis' }, cached.length);
      this.logger.info({ action: 'analysis.submitted', requestId, tenant, imageHash: hash, newImage: written, models, cached }, 'image analysis submitted');
    }
    return checked.map(({ staged }) => answered.get(staged.hash)!);
  }

  /** The staged image's header checks; on a refusal its staging file is removed and the error names the image. */
  private async check(staged: StagedImage, index: number): Promise<CheckedImage> {
    try {
      return { staged, info: await inspectImage({ path: staged.path, bytes: staged.bytes }, this.config.imageLimits) };
    } catch (error) {
      await discardStaged(staged);
      if (error instanceof AppError) throw new AppError(error.code, `image ${index + 1}: ${error.message}`, { imageIndex: index });
      throw error;
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
    const unknown = names.filter((name) => !this.isAnalysable(name));
    const valid = this.analysableModels();
    if (unknown.length > 0) {
      throw new AppError(ErrorCode.UnknownModel, `unknown model${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 8).map((n) => echoed(n)).join(', ')}${unknown.length > 8 ? ` and ${unknown.length - 8} more` : ''}; valid models: ${valid.join(', ')}`, {
        unknownModels: unknown.slice(0, 8).map((n) => n.slice(0, 64)),
        validModels: valid,
      });
    }
  }

  /** Whether an analysis can run `name` (a served model, not an embedder). */
  isAnalysable(name: string): boolean {
    return this.analysableModels().includes(name);
  }

  private analysableModels(): string[] {
    return this.directory.catalog.list().filter((model) => model.task !== 'face-embedding').map((model) => model.name);
  }
}
