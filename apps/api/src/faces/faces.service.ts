import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, decodeJobError, ErrorCode, FacesView, InferenceJobName, JobPriority, MatchFacesJobData, matchFacesJobId, TenantId } from '@app/contracts';
import { inspectImage } from '@app/imaging';
import { APP_LOGGER } from '@app/logging';
import { AnalysisStore, CONTENT_STORE, ContentStore, FACES_CRASH_SUBJECT, FaceSnapshots, FaceStore, ImageLocks, logPurgeDeferred, PoisonImages } from '@app/storage';
import { requireImageHash } from '../common/image-hash';
import { InferenceQueue } from '../jobs/inference-queue';
import { JobWaiter } from '../jobs/job-waiter';
import { ImagesService } from '../images/images.service';
import { ApiMetrics } from '../ops/api-metrics';

export type FacesOutcome = { kind: 'done'; view: FacesView; cached: boolean } | { kind: 'pending'; imageHash: string; jobId: string };

/**
 * Face matching within one tenant: store the image once, one job per image, wait up to FACE_WAIT_MS for its
 * faces and matches. A tenant's faces are matched only against the same tenant's faces.
 */
@Injectable()
export class FacesService {
  /** Tenants this process has registered as face owners (so each is registered once per process). */
  private readonly registeredTenants = new Set<TenantId>();

  constructor(
    private readonly faces: FaceStore,
    private readonly snapshots: FaceSnapshots,
    private readonly results: AnalysisStore,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
    private readonly locks: ImageLocks,
    private readonly images: ImagesService,
    private readonly jobs: InferenceQueue,
    private readonly waiter: JobWaiter,
    private readonly config: AppConfig,
    private readonly metrics: ApiMetrics,
    private readonly poison: PoisonImages,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async submit(tenant: TenantId, requestId: string, bytes: Buffer): Promise<FacesOutcome> {
    const env = this.config.values;
    const info = await inspectImage(bytes, this.config.imageLimits);
    const imageHash = createHash('sha256').update(bytes).digest('hex');
    const known = await this.view(tenant, imageHash);
    if (known) {
      this.logger.info({ action: 'faces.cached', requestId, tenant, imageHash }, 'faces answered from stored data');
      this.metrics.cacheHits.inc({ kind: 'faces' });
      return { kind: 'done', view: known, cached: true };
    }
    await this.jobs.assertCapacity();
    // Bytes and metadata together, so an erasure of the same image lands before both or after both.
    await this.locks.withLock(tenant, imageHash, async () => {
      await this.store.put(tenant, imageHash, bytes);
      await this.results.registerImage(tenant, { hash: imageHash, bytes: info.bytes, format: info.format, width: info.width, height: info.height, firstSeen: new Date().toISOString() }, []);
    });
    return this.match(tenant, requestId, imageHash);
  }

  /** Face matching for the tenant's image already stored (by an analysis or an earlier upload), so a client need not send it twice. */
  async submitStored(tenant: TenantId, requestId: string, imageHash: string): Promise<FacesOutcome> {
    requireImageHash(imageHash);
    // findImage registers the image again from its bytes when Redis lost its metadata (as GET /v1/images/:hash does).
    if (!(await this.images.findImage(tenant, imageHash, requestId)) || !(await this.store.has(tenant, imageHash))) {
      throw new AppError(ErrorCode.NotFound, `no stored image ${imageHash}: send the image itself`);
    }
    const known = await this.view(tenant, imageHash);
    if (known) return { kind: 'done', view: known, cached: true };
    return this.match(tenant, requestId, imageHash);
  }

  /**
   * Queues (or joins) the image's match-faces job and waits up to FACE_WAIT_MS for its answer. A job that vanished
   * from Redis meanwhile (restart without persistence, a failover that lost writes) is queued once more: the
   * image is in the store.
   */
  private async match(tenant: TenantId, requestId: string, imageHash: string): Promise<FacesOutcome> {
    const env = this.config.values;
    await this.jobs.assertCapacity();
    // An image that killed the workers matching its faces (poison) is not queued again: 422 IMAGE_CRASHED_WORKER.
    await this.poison.assertNotPoison({ tenant, imageHash, model: FACES_CRASH_SUBJECT });
    if (!this.registeredTenants.has(tenant)) {
      await this.faces.registerTenant(tenant);
      this.registeredTenants.add(tenant);
    }
    const jobId = matchFacesJobId(tenant, imageHash);
    const data: MatchFacesJobData = { requestId, tenant, imageHash, enqueuedAt: Date.now() };
    const deadline = Date.now() + env.FACE_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      // One job per image: concurrent submissions of the same image join it.
      await this.jobs.addDeduplicated(InferenceJobName.MatchFaces, data, jobId, JobPriority.Interactive, env.FAILED_RESULT_TTL_SECONDS);
      this.logger.info({ action: attempt === 1 ? 'job.enqueued' : 'job.requeued', requestId, tenant, jobId, imageHash }, attempt === 1 ? 'match-faces job queued' : 'match-faces job vanished from Redis; queued again');
      const outcome = await this.waiter.wait(jobId, Math.max(0, deadline - Date.now()));
      const view = await this.view(tenant, imageHash);
      if (view) return { kind: 'done', view, cached: false };
      if (outcome.state === 'failed') throw new AppError(outcome.error.code, outcome.error.message, outcome.error.details);
      if (outcome.state !== 'vanished' || attempt > 1) return { kind: 'pending', imageHash, jobId };
    }
  }

  async matches(tenant: TenantId, imageHash: string): Promise<FacesOutcome> {
    requireImageHash(imageHash);
    const view = await this.view(tenant, imageHash);
    if (view) return { kind: 'done', view, cached: true };
    const jobId = matchFacesJobId(tenant, imageHash);
    const state = await this.jobs.getStateById(jobId);
    if (state === 'waiting' || state === 'active') return { kind: 'pending', imageHash, jobId };
    if (state === 'failed') {
      const job = await this.jobs.getJob(jobId);
      const error = decodeJobError(job?.failedReason);
      throw new AppError(error.code, error.message, error.details);
    }
    throw noFaceData(imageHash);
  }

  /** The stored faces and matches, capped to FACE_MATCHES_MAX per list. */
  private view(tenant: TenantId, imageHash: string): Promise<FacesView | undefined> {
    return this.faces.view(tenant, imageHash, this.config.values.FACE_MATCHES_MAX);
  }

  async forget(tenant: TenantId, imageHash: string): Promise<{ imageHash: string; removedFaces: number; updatedImages: number; removedSnapshots: number; snapshotPurgePending: boolean }> {
    requireImageHash(imageHash);
    if (!(await this.faces.hasImageFaces(tenant, imageHash))) throw noFaceData(imageHash);
    const { removedFaces, updatedImages, tombstoneSeq } = await this.faces.deleteImageFaces(tenant, imageHash);
    // Saved face indexes from before the tombstone may hold these faces' vectors: they go too (or, when the disk
    // refuses now, as soon as a worker's retry can: FaceSnapshots.purgeOrDefer).
    const purge = await this.snapshots.purgeOrDefer(tenant, tombstoneSeq);
    if (purge.deferred) logPurgeDeferred(this.logger, { tenant, imageHash }, purge.deferred);
    const answer = { imageHash, removedFaces, updatedImages, removedSnapshots: purge.removed, snapshotPurgePending: purge.deferred !== undefined };
    this.logger.info({ action: 'faces.forgotten', tenant, ...answer }, 'image faces removed from the index and every match set');
    return answer;
  }
}

function noFaceData(imageHash: string): AppError {
  return new AppError(ErrorCode.NotFound, `no face data for image ${imageHash}: submit it to POST /v1/faces`);
}
