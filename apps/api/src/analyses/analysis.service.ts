import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, ErrorCode } from '@app/contracts';
import { inspectImage, ImageInfo } from '@app/imaging';
import { APP_LOGGER } from '@app/logging';
import { AnalysisStore, CONTENT_STORE, ContentStore } from '@app/storage';
import { ModelDirectory } from '../models/model-directory';
import { ApiMetrics } from '../ops/api-metrics';
import { AnalysisJobs, ModelStatus } from './analysis-jobs';

export interface SubmittedImage {
  hash: string;
  models: Record<string, ModelStatus>;
}

/** Many images × many models: validate everything first, then store each image once and queue each pair once. */
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

  async submit(requestId: string, images: Buffer[], modelFields: string[]): Promise<SubmittedImage[]> {
    const models = this.parseModels(modelFields);
    const env = this.config.values;
    // Nothing is stored or queued until every image and every model name has passed.
    const checked: { hash: string; bytes: Buffer; info: ImageInfo }[] = [];
    for (const [index, bytes] of images.entries()) {
      try {
        const info = await inspectImage(bytes, this.config.imageLimits);
        checked.push({ hash: createHash('sha256').update(bytes).digest('hex'), bytes, info });
      } catch (error) {
        if (error instanceof AppError) throw new AppError(error.code, `image ${index + 1} of ${images.length}: ${error.message}`, { imageIndex: index });
        throw error;
      }
    }
    // Refuse before storing anything when the queue is full.
    await this.pairs.assertCapacity();
    const firstSeen = new Date().toISOString();
    const answered = new Map<string, SubmittedImage>();
    for (const { hash, bytes, info } of checked) {
      if (answered.has(hash)) continue;
      const written = await this.store.put(hash, bytes);
      await this.results.registerImage({ hash, bytes: info.bytes, format: info.format, width: info.width, height: info.height, firstSeen }, models);
      const statuses: Record<string, ModelStatus> = {};
      for (const model of models) statuses[model] = await this.pairs.ensure(hash, model, requestId);
      answered.set(hash, { hash, models: statuses });
      this.metrics.cacheHits.inc({ kind: 'analysis' }, models.filter((m) => statuses[m].cached).length);
      this.logger.info(
        { action: 'analysis.submitted', requestId, imageHash: hash, newImage: written, models, cached: models.filter((m) => statuses[m].cached) },
        'image analysis submitted',
      );
    }
    return checked.map(({ hash }) => answered.get(hash)!);
  }

  /** `models` as repeated fields and/or comma lists; every name must exist. */
  parseModels(fields: string[]): string[] {
    const names = [...new Set(fields.flatMap((field) => field.split(',')).map((name) => name.trim()).filter((name) => name.length > 0))];
    // Embedders need aligned faces, not whole images: they run inside POST /v1/faces.
    const valid = this.directory.catalog.list().filter((model) => model.task !== 'face-embedding').map((model) => model.name);
    if (names.length === 0) throw new AppError(ErrorCode.InvalidParameter, `name at least one model in "models"; valid models: ${valid.join(', ')}`, { validModels: valid });
    const unknown = names.filter((name) => !valid.includes(name));
    if (unknown.length > 0) {
      throw new AppError(ErrorCode.UnknownModel, `unknown model${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `"${n}"`).join(', ')}; valid models: ${valid.join(', ')}`, {
        unknownModels: unknown,
        validModels: valid,
      });
    }
    return names;
  }
}
