import { Inject, Injectable } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import type Redis from 'ioredis';
import { entriesNamingJobs, REDIS_CLIENT, StreamEntry } from '@app/redis';
import { AnalysisRecord, AnalysisState, analyzeJobId, AppError, ErrorCode, ImageMetadata, INFERENCE_QUEUE, matchFacesJobId, RedisKeys, TenantId } from '@app/contracts';
import { AnalysisStore, CONTENT_STORE, ContentStore, ErasureReport, ImageErasure, ImageLocks, logPurgeDeferred, PoisonImages } from '@app/storage';
import { createHash } from 'node:crypto';
import { detectImageFormat, inspectImage } from '@app/imaging';
import { APP_LOGGER } from '@app/logging';
import { requireImageHash } from '../common/image-hash';
import { AppConfig } from '@app/config';
import { AnalysisJobs } from '../analyses/analysis-jobs';
import { AnalysisService } from '../analyses/analysis.service';
import { ImageEventsHub } from './image-events.hub';

export interface ModelView {
  state: AnalysisState;
  url: string;
  result?: unknown;
  error?: { code: string; message: string };
  computedAt?: string;
}

export type ResultLookup = { kind: 'ready'; record: AnalysisRecord } | { kind: 'pending'; state: AnalysisState };

/** What finding an image Redis lost does besides registering it again (ImagesService.findImage). */

/** How a stream of results ended. */
export type FollowOutcome = 'done' | 'timeout' | 'closed' | 'erased';

/**
 * Reading a tenant's analyses back by image hash (including following them as they finish), and erasing an
 * image. Every method starts from the tenant's own record of the image: another tenant's image is "no image"
 * here, with exactly the answer a hash nobody stored gets.
 */
@Injectable()
export class ImagesService {
  constructor(
    private readonly results: AnalysisStore,
    private readonly pairs: AnalysisJobs,
    private readonly analyses: AnalysisService,
    private readonly hub: ImageEventsHub,
    private readonly erasure: ImageErasure,
    private readonly locks: ImageLocks,
    private readonly config: AppConfig,
    @InjectQueue(INFERENCE_QUEUE) private readonly queue: Queue,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly poison: PoisonImages,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  /**
   * The tenant's image metadata; 404 NOT_FOUND when the tenant has no such image (whoever else might).
   * `requestId` names the request in the log of a recovery (findImage).
   */
  async requireImage(tenant: TenantId, hash: string, requestId: string): Promise<ImageMetadata> {
    requireImageHash(hash);
    const image = await this.findImage(tenant, hash, requestId);
    if (!image) throw notFound(hash);
    return image;
  }

  /**
   * The tenant's image metadata, registered again from its stored bytes when Redis lost it (see recoverImage);
   * undefined when the tenant has no such image. `hash` must already be a valid image hash. A recovered image's
   * noted models are queued at once (an erasure never recovers: it erases the bytes as they are).
   */
  async findImage(tenant: TenantId, hash: string, requestId: string): Promise<ImageMetadata | undefined> {
    return (await this.results.getImage(tenant, hash)) ?? (await this.recoverImage(tenant, hash, requestId));
  }

  /**
   * The tenant's bytes are in the content store but Redis has no metadata for them: Redis lost writes (a restart
   * without persistence, a failover before replication), or an erasure stopped between its Redis step and its
   * file step. The image is registered again from its bytes, under the image's lock as an upload is, so it can
   * be read, analysed again and erased; otherwise the bytes would stay on disk where no route reaches them (an
   * interrupted erasure is then finished by the client's retried DELETE). Costs one file read, only when the
   * metadata is missing and the file exists; a file whose content does not match its name is left alone. The
   * models noted beside the bytes (ContentStore.noteModels) are registered with it.
   */
  private async recoverImage(tenant: TenantId, hash: string, requestId: string): Promise<ImageMetadata | undefined> {
    if (!(await this.store.has(tenant, hash))) return undefined;
    return this.locks.withLock(tenant, hash, async () => {
      const registered = await this.results.getImage(tenant, hash);
      if (registered) return registered;
      const bytes = await this.store.get(tenant, hash);
      if (!bytes || createHash('sha256').update(bytes).digest('hex') !== hash) return undefined;
      // An image stored under limits since tightened (fewer pixels, bytes or frames) is still the tenant's:
      // registered from its header read with only the format checks, so it can be read and erased (its
      // analyses then fail as the image fault they are). Bytes that are no accepted image at all are left alone.
      const limits = this.config.imageLimits;
      const info =
        (await inspectImage(bytes, limits).catch(() => undefined)) ??
        (await inspectImage(bytes, { ...limits, maxBytes: bytes.length, maxPixels: Number.MAX_SAFE_INTEGER, maxFrames: Number.MAX_SAFE_INTEGER, maxAspectRatio: 0 }).catch(() => undefined));
      if (!info) return undefined;
      const meta: ImageMetadata = { hash, bytes: info.bytes, format: info.format, width: info.width, height: info.height, firstSeen: new Date().toISOString() };
      // The models its clients asked for, as noted beside the bytes; results they lost are computed again when
      // read or followed (result() and follow() queue missing pairs). A model no longer served is left out.
      const models = (await this.store.notedModels(tenant, hash)).filter((model) => this.analyses.isAnalysable(model));
      await this.results.registerImage(tenant, meta, models);
      this.logger.warn({ action: 'image.recovered', requestId, tenant, imageHash: hash, models, queued: true }, 'stored bytes had no metadata in Redis (lost writes): the image is registered again');
      // Queued at once, so GET /v1/images/:hash shows them progressing. A full queue (503) leaves them to
      // result() and follow(), which queue missing pairs when read.
      for (const model of models) {
        await this.pairs.ensure(tenant, hash, model, `recovered:${hash.slice(0, 16)}`).catch((error: Error) => {
          this.logger.warn({ action: 'image.recovery_queue_deferred', requestId, tenant, imageHash: hash, model, err: error.message }, 'a recovered image’s analysis could not be queued now; it is queued when read');
        });
      }
      return meta;
    });
  }

  async describe(tenant: TenantId, hash: string, requestId: string): Promise<{ image: ImageMetadata; models: Record<string, ModelView> }> {
    const image = await this.requireImage(tenant, hash, requestId);
    const models = await this.results.modelsOf(tenant, hash);
    const records = await this.results.getResults(tenant, hash, models);
    const views: Record<string, ModelView> = {};
    for (const model of models) {
      const found = records.get(model);
      const latest = found ? { record: found } : await this.pairs.lookup(tenant, hash, model);
      views[model] = 'record' in latest ? viewOf(hash, latest.record) : { state: latest.state, url: AnalysisJobs.resultUrl(hash, model) };
    }
    return { image, models: views };
  }

  /** The tenant's stored bytes of an image and their format (checked by its header when stored). */
  async content(tenant: TenantId, hash: string, requestId: string): Promise<{ bytes: Buffer; format: string }> {
    await this.requireImage(tenant, hash, requestId);
    const bytes = await this.store.get(tenant, hash);
    const format = bytes && (await detectImageFormat(bytes));
    if (!bytes || !format) throw notFound(hash);
    return { bytes, format };
  }

  /** One model's result; an expired or never-run pair of a stored image is queued again. */
  async result(tenant: TenantId, hash: string, model: string, requestId: string): Promise<ResultLookup> {
    requireImageHash(hash);
    // The same 400 as POST /v1/analyses for a model an analysis cannot run (unknown, or an embedder).
    this.analyses.assertAnalysable(model);
    await this.requireImage(tenant, hash, requestId);
    const record = await this.results.getResult(tenant, hash, model);
    if (record) return { kind: 'ready', record };
    if (!(await this.results.addModels(tenant, hash, [model]))) throw notFound(hash);
    if (!(await this.noteModel(tenant, hash, model))) throw notFound(hash);
    const status = await this.pairs.ensure(tenant, hash, model, requestId);
    const now = await this.results.getResult(tenant, hash, model);
    return now ? { kind: 'ready', record: now } : { kind: 'pending', state: status.state };
  }

  /**
   * Notes `model` beside the image's bytes (ContentStore.noteModels), under the image's lock and only while its
   * record exists; false when the image was erased meanwhile. Unlocked, an erasure that finished between addModels
   * and the note left the note behind the erased bytes, naming the erased image and its models (red-team: 4 of 40
   * GET …/results/:model racing a DELETE). Reads of a pair already noted (a client polling) cost one file read, no lock.
   */
  private async noteModel(tenant: TenantId, hash: string, model: string): Promise<boolean> {
    if ((await this.store.notedModels(tenant, hash)).includes(model)) return true;
    return this.locks.withLock(tenant, hash, async () => {
      if (!(await this.results.hasImage(tenant, hash))) return false;
      await this.store.noteModels(tenant, hash, [model]);
      return true;
    });
  }

  /**
   * Calls `emit` once per model as each finishes (those already finished first), then resolves. Woken by
   * pub/sub, with polling every second as the backup; gives up after SSE_MAX_MS or when `closed` says so;
   * ends with 'erased' when the image is erased meanwhile. The caller has checked the image exists.
   */
  async follow(tenant: TenantId, hash: string, requestId: string, emit: (model: string, view: ModelView) => void, closed: () => boolean): Promise<FollowOutcome> {
    const pending = new Set(await this.results.modelsOf(tenant, hash));
    let wake: () => void = () => undefined;
    const stop = await this.hub.listen(this.results.eventsChannel(tenant, hash), () => wake());
    const deadline = Date.now() + this.config.values.SSE_MAX_MS;
    try {
      let first = true;
      while (pending.size > 0) {
        if (closed()) return 'closed';
        if (Date.now() > deadline) return 'timeout';
        const records = await this.results.getResults(tenant, hash, [...pending]);
        for (const [model, record] of records) {
          pending.delete(model);
          emit(model, viewOf(hash, record));
        }
        if (pending.size === 0) break;
        if (!(await this.results.hasImage(tenant, hash))) return 'erased';
        if (first) {
          // Expired or never-queued pairs would otherwise never finish.
          for (const model of pending) await this.pairs.ensure(tenant, hash, model, requestId);
          first = false;
        }
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

  /**
   * Erasure: the tenant's metadata, results, faces and match entries on both sides, its queued jobs for the
   * image, and its copy of the bytes. A job already running writes nothing back (workers write only while the
   * image's metadata exists). Another tenant's copy of the same file is untouched. 404 when the tenant has no
   * such image.
   */
  async erase(tenant: TenantId, hash: string, requestId: string): Promise<ErasureReport & { imageHash: string; removedJobs: number }> {
    requireImageHash(hash);
    // Metadata lost (bytes only): erase the bytes as they are, without registering them first (a write a full
    // Redis refuses, so the erasure answered 503 until Redis had room).
    // An image sent only to /v1/classify that killed workers has nothing stored but its crash record: that too is erased.
    if (!(await this.results.getImage(tenant, hash)) && !(await this.store.has(tenant, hash)) && !(await this.poison.hasRecord(tenant, hash))) throw notFound(hash);
    return this.locks.withLock(tenant, hash, async () => {
      const models = await this.results.modelsOf(tenant, hash);
      // Two steps, each in one Redis Cluster slot: the queue's keys ({QUEUE_PREFIX}) and the tenant's ({t}) never
      // share one. Jobs first: a crash or a 503 between the steps leaves the image in place, so the client's
      // retry of the DELETE finds it and runs both again (each is idempotent: removing a removed job, or erasing
      // an erased image, does nothing). The other order could leave jobs and their events behind an image
      // already gone, which a retry (404) would never reach. A job added in between finds no image when it runs
      // and writes nothing back.
      const jobIds = [matchFacesJobId(tenant, hash), ...models.map((model) => analyzeJobId(tenant, hash, model))];
      const removedJobs = await this.removeJobs(jobIds);
      const { purgeDeferredBy, ...report } = await this.erasure.erase(tenant, hash);
      if (purgeDeferredBy) logPurgeDeferred(this.logger, { requestId, tenant, imageHash: hash }, purgeDeferredBy);
      if (!report.existed && !report.removedBytes && !report.removedCrashRecord) throw notFound(hash);
      // Again now the record is gone: a running job that completed between the two steps added its event after
      // the first sweep (and a job completing from now on sees no image: the worker forgets it itself).
      await this.removeJobEvents(new Set(jobIds));
      this.logger.info({ action: 'image.erased', requestId, tenant, imageHash: hash, ...report, removedJobs }, "tenant's image erased");
      return { imageHash: hash, ...report, existed: report.existed || report.removedBytes || report.removedCrashRecord, removedJobs };
      // Even in a full Redis (OOM under noeviction): an erasure only frees memory, and is how a tenant makes room.
    }, { evenWhenFull: true });
  }

  /**
   * Removes the image's jobs: waiting ones from the queue (a running one holds a lock, cannot be removed, and
   * finishes without writing back), and every entry of the queue's event stream that names them (their ids are
   * derived from the tenant and the image, so an entry would say the image was processed). The stream is capped
   * at EVENTS_MAX_LEN entries, so reading it here costs at most that. Returns how many jobs existed and went.
   */
  private async removeJobs(jobIds: string[]): Promise<number> {
    let removed = 0;
    for (const jobId of jobIds) {
      if (await this.queue.getJob(jobId)) removed += await this.queue.remove(jobId).catch(() => 0);
    }
    await this.removeJobEvents(new Set(jobIds));
    return removed;
  }

  /** Deletes every entry of the queue's event stream that names one of `ids` (at most EVENTS_MAX_LEN entries read). */
  private async removeJobEvents(ids: ReadonlySet<string>): Promise<void> {
    const events = this.keys.queueEvents(INFERENCE_QUEUE);
    const client = this.redis;
    let from = '-';
    for (;;) {
      const entries = (await client.xrange(events, from, '+', 'COUNT', 1000)) as StreamEntry[];
      const naming = entriesNamingJobs(entries, ids);
      if (naming.length > 0) await client.xdel(events, ...naming);
      if (entries.length < 1000) return;
      from = `(${entries[entries.length - 1][0]}`;
    }
  }
}

function notFound(hash: string): AppError {
  return new AppError(ErrorCode.NotFound, `no image ${hash}`);
}

function viewOf(hash: string, record: AnalysisRecord): ModelView {
  const url = AnalysisJobs.resultUrl(hash, record.model);
  return record.state === 'completed'
    ? { state: 'completed', url, result: record.result, computedAt: record.computedAt }
    : { state: 'failed', url, error: record.error, computedAt: record.computedAt };
}
