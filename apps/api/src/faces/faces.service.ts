import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, decodeJobError, ErrorCode, FacesView, InferenceJobName, JobPriority, MatchFacesJobData, matchFacesJobId } from '@app/contracts';
import { inspectImage } from '@app/imaging';
import { APP_LOGGER } from '@app/logging';
import { AnalysisStore, CONTENT_STORE, ContentStore, FaceStore } from '@app/storage';
import { requireImageHash } from '../common/image-hash';
import { InferenceQueue } from '../jobs/inference-queue';
import { JobWaiter } from '../jobs/job-waiter';
import { ApiMetrics } from '../ops/api-metrics';

export type FacesOutcome = { kind: 'done'; view: FacesView; cached: boolean } | { kind: 'pending'; imageHash: string; jobId: string };

/** Face matching: store the image once, one job per image, wait up to FACE_WAIT_MS for its faces and matches. */
@Injectable()
export class FacesService {
  constructor(
    private readonly faces: FaceStore,
    private readonly results: AnalysisStore,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
    private readonly jobs: InferenceQueue,
    private readonly waiter: JobWaiter,
    private readonly config: AppConfig,
    private readonly metrics: ApiMetrics,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async submit(requestId: string, bytes: Buffer): Promise<FacesOutcome> {
    const env = this.config.values;
    const info = await inspectImage(bytes, this.config.imageLimits);
    const imageHash = createHash('sha256').update(bytes).digest('hex');
    const known = await this.view(imageHash);
    if (known) {
      this.logger.info({ action: 'faces.cached', requestId, imageHash }, 'faces answered from stored data');
      this.metrics.cacheHits.inc({ kind: 'faces' });
      return { kind: 'done', view: known, cached: true };
    }
    await this.jobs.assertCapacity();
    await this.store.put(imageHash, bytes);
    await this.results.registerImage({ hash: imageHash, bytes: info.bytes, format: info.format, width: info.width, height: info.height, firstSeen: new Date().toISOString() }, []);
    const jobId = matchFacesJobId(imageHash);
    const data: MatchFacesJobData = { requestId, imageHash, enqueuedAt: Date.now() };
    // One job per image: concurrent submissions of the same image join it.
    await this.jobs.addDeduplicated(InferenceJobName.MatchFaces, data, jobId, JobPriority.Interactive, env.FAILED_RESULT_TTL_SECONDS);
    this.logger.info({ action: 'job.enqueued', requestId, jobId, imageHash }, 'match-faces job queued');
    const outcome = await this.waiter.wait(jobId, env.FACE_WAIT_MS);
    const view = await this.view(imageHash);
    if (view) return { kind: 'done', view, cached: false };
    if (outcome.state === 'failed' && outcome.error.code !== ErrorCode.JobNotFound) throw new AppError(outcome.error.code, outcome.error.message);
    return { kind: 'pending', imageHash, jobId };
  }

  /** Face matching for an image already stored (by an analysis or an earlier upload), so a client need not send it twice. */
  async submitStored(requestId: string, imageHash: string): Promise<FacesOutcome> {
    requireImageHash(imageHash);
    const bytes = await this.store.get(imageHash);
    if (!bytes) throw new AppError(ErrorCode.NotFound, `no stored image ${imageHash}: send the image itself`);
    return this.submit(requestId, bytes);
  }

  async matches(imageHash: string): Promise<FacesOutcome> {
    requireImageHash(imageHash);
    const view = await this.view(imageHash);
    if (view) return { kind: 'done', view, cached: true };
    const jobId = matchFacesJobId(imageHash);
    const state = await this.jobs.getStateById(jobId);
    if (state === 'waiting' || state === 'active') return { kind: 'pending', imageHash, jobId };
    if (state === 'failed') {
      const job = await this.jobs.getJob(jobId);
      const error = decodeJobError(job?.failedReason);
      throw new AppError(error.code, error.message);
    }
    throw new AppError(ErrorCode.NotFound, `no face data for image ${imageHash}: submit it to POST /v1/faces`);
  }

  /** The stored faces and matches, capped to FACE_MATCHES_MAX per list. */
  private view(imageHash: string): Promise<FacesView | undefined> {
    return this.faces.view(imageHash, this.config.values.FACE_MATCHES_MAX);
  }

  async forget(imageHash: string): Promise<{ imageHash: string; removedFaces: number; updatedImages: number }> {
    requireImageHash(imageHash);
    if (!(await this.faces.hasImageFaces(imageHash))) throw new AppError(ErrorCode.NotFound, `no face data for image ${imageHash}`);
    const removed = await this.faces.deleteImageFaces(imageHash);
    this.logger.info({ action: 'faces.forgotten', imageHash, ...removed }, 'image faces removed from the index and every match set');
    return { imageHash, ...removed };
  }
}
