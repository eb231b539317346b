import { createHash, randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, classifyItemId, echoed, ClassifyJobResult, ErrorBody, ErrorCode, TenantId, TOPK_DEFAULT, TOPK_MAX, TOPK_MIN } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { PoisonImages } from '@app/storage';
import { InferenceQueue } from '../jobs/inference-queue';
import { itemOutcome } from '../jobs/classify-item-outcome';
import { JobOutcome, JobWaiter } from '../jobs/job-waiter';
import { ModelDirectory } from '../models/model-directory';
import { ApiMetrics } from '../ops/api-metrics';
import { ClassifyCoalescer } from './classify-coalescer';
import { admitImage } from './image-admission';

export const DEFAULT_CLASSIFIER = 'mobilenet_v2';

export interface ClassifyRequest {
  requestId: string;
  tenant: TenantId;
  bytes: Buffer;
  model?: string;
  topk?: string | number;
  /** Fires when the client hangs up: its job, if no worker has taken it yet, is dropped. */
  signal?: AbortSignal;
}

export type ClassifyOutcome =
  | { kind: 'completed'; jobId: string; result: ClassifyJobResult; totalMs: number }
  | { kind: 'failed'; jobId: string; error: ErrorBody }
  | { kind: 'pending'; jobId: string }
  /** The client left before the answer; nobody can read the result (it never got the job id). */
  | { kind: 'abandoned'; jobId: string };

/** What a request brings to a coalesced group (ClassifyCoalescer). */
interface CoalescedRequest {
  bytes: Buffer;
  requestId: string;
  tenant: TenantId;
  imageHash: string;
  topk: number;
}

/**
 * Synchronous classification: validate, queue one job, wait for its answer up to REQUEST_WAIT_MS. The request
 * holds the image bytes until it is answered, so a job that vanishes from Redis meanwhile is queued once more;
 * a second loss is a 503. A job whose client hung up before a worker took it is dropped.
 *
 * With CLASSIFY_COALESCE_MAX > 1, requests that arrive while this API already has CLASSIFY_COALESCE_IN_FLIGHT
 * jobs of their model in flight go together as one classify-batch job (ClassifyCoalescer); each request reads its
 * own item of the job's result and answers to the id `<job>.<index>`. A request that finds fewer in flight is sent
 * at once as a single classify job, exactly as without coalescing. A batch item whose client hung up is not
 * removed while its job holds other requests' images that someone waits for: it runs, unread. A batch job all of
 * whose clients hung up is dropped like a single one.
 */
@Injectable()
export class ClassifyService {
  constructor(
    private readonly jobs: InferenceQueue,
    private readonly waiter: JobWaiter,
    private readonly models: ModelDirectory,
    private readonly config: AppConfig,
    private readonly metrics: ApiMetrics,
    private readonly poison: PoisonImages,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {
    const env = config.values;
    this.coalescer = new ClassifyCoalescer<CoalescedRequest>(
      (model, jobId, items) => this.sendGroup(model, jobId, items),
      { max: env.CLASSIFY_COALESCE_MAX, inFlightLimit: env.CLASSIFY_COALESCE_IN_FLIGHT, delayMs: env.CLASSIFY_COALESCE_DELAY_MS },
      (model, size) => metrics.coalescedGroupSize.observe({ model }, size),
      (_model, jobId, size) => this.jobs.dropAbandonedBatch(jobId, size),
    );
  }

  private readonly coalescer: ClassifyCoalescer<CoalescedRequest>;

  async classify(request: ClassifyRequest): Promise<ClassifyOutcome> {
    const started = performance.now();
    const env = this.config.values;
    const model = this.models.catalog.get(request.model || DEFAULT_CLASSIFIER, 'classification');
    const topk = parseTopK(request.topk);
    // An image that killed the workers running it with this model (poison) is refused before it is queued: one HGET
    // beside the header check, so no added wait. The hash also goes with the job, for the worker to count deaths by.
    const imageHash = createHash('sha256').update(request.bytes).digest('hex');
    // Both settle before either's error is thrown: the route frees the bytes once this returns (admitImage).
    const { image, verdict } = await admitImage(request.bytes, this.config.imageLimits, this.poison, { tenant: request.tenant, imageHash, model: model.name });
    const waitUntil = Date.now() + env.REQUEST_WAIT_MS;
    // A suspect (a coalesced job that carried it died twice) goes alone: its own deaths are counted, nobody else's.
    // So does an image with a count of its own (it may have been counted beside another image's death): its job carries
    // the count, so a run to its end clears it (PoisonWatch).
    const coalescing = env.CLASSIFY_COALESCE_MAX > 1 && !verdict.suspect && verdict.crashes === 0;
    for (let attempt = 1; ; attempt++) {
      const logEnqueued = (jobId: string, extra: Record<string, unknown> = {}) =>
        this.logger.info(
          { action: attempt === 1 ? 'job.enqueued' : 'job.requeued', requestId: request.requestId, jobId, ...extra, model: model.name, format: image.format, width: image.width, height: image.height, bytes: image.bytes },
          attempt === 1 ? 'classify job queued' : 'classify job vanished from Redis; queued again',
        );
      let jobId: string;
      /** Set when the request went as item `index` of a classify-batch job. */
      let index: number | undefined;
      let enqueue: () => Promise<void>;
      let release: (abandoned: boolean) => void = () => undefined;
      let dropped: Promise<boolean> = Promise.resolve(false);
      if (!coalescing) {
        const id = (jobId = randomUUID());
        // The waiter listens before the job exists, so its completion event cannot come first.
        enqueue = async () => {
          const now = Date.now();
          await this.jobs.enqueueClassify(id, request.bytes, {
            requestId: request.requestId,
            tenant: request.tenant,
            imageHash,
            ...(verdict.crashes > 0 ? { crashCount: verdict.crashes } : {}),
            model: model.name,
            topk,
            enqueuedAt: now,
            deadlineAt: now + env.JOB_DEADLINE_MS,
          });
          logEnqueued(id);
        };
      } else {
        // Back-pressure before the request joins a group, so a full queue refuses it with nothing stored.
        await this.jobs.assertCapacity();
        // No await between join and wait: the waiter listens before the group's job can exist.
        const ticket = this.coalescer.join(model.name, { bytes: request.bytes, requestId: request.requestId, tenant: request.tenant, imageHash, topk });
        jobId = ticket.jobId;
        release = ticket.release;
        dropped = ticket.dropped;
        enqueue = async () => {
          const size = await ticket.sent;
          if (size > 1) index = ticket.index;
          logEnqueued(size > 1 ? classifyItemId(ticket.jobId, ticket.index) : ticket.jobId, size > 1 ? { batchJobId: ticket.jobId, groupSize: size } : {});
        };
      }
      let outcome: JobOutcome | undefined;
      try {
        outcome = await this.waiter.wait(jobId, Math.max(0, waitUntil - Date.now()), request.signal, { enqueue });
      } finally {
        release(outcome?.state === 'abandoned');
      }
      const id = index === undefined ? jobId : classifyItemId(jobId, index);
      if (index !== undefined && outcome.state === 'completed') outcome = itemOutcome(outcome.result, index);
      switch (outcome.state) {
        case 'completed': {
          // The worker deletes the bytes once the job is recorded as completed (a worker killed just then
          // leaves them to BLOB_TTL_SECONDS): no second DEL from here.
          const totalMs = Math.round((performance.now() - started) * 100) / 100;
          this.metrics.endToEnd.observe({ model: model.name }, totalMs / 1000);
          return { kind: 'completed', jobId: id, result: outcome.result as ClassifyJobResult, totalMs };
        }
        case 'failed':
          void (index === undefined ? this.jobs.releaseBlob(jobId) : this.jobs.releaseItemBlob(jobId, index)).catch(() => undefined);
          return { kind: 'failed', jobId: id, error: outcome.error };
        case 'timeout':
          this.logger.info({ action: 'job.wait_timeout', requestId: request.requestId, jobId: id, waitMs: env.REQUEST_WAIT_MS }, 'answer not ready in time; client gets 202');
          return { kind: 'pending', jobId: id };
        case 'abandoned':
          if (index === undefined) await this.abandon(jobId, request.requestId);
          else {
            // Its job carries other requests' images: it is removed only when every one of its clients left
            // before a worker took it; otherwise the item runs, unread. Known once the group's last request ends.
            void dropped.then((gone) => {
              this.metrics.abandonedJobs.inc({ outcome: gone ? 'dropped' : 'running' });
              this.logger.info({ action: 'job.abandoned', requestId: request.requestId, jobId: id, dropped: gone }, gone ? 'every client of a coalesced job left before a worker took it: dropped' : 'client left; its item of a coalesced job runs, unread');
            });
          }
          return { kind: 'abandoned', jobId: id };
        case 'vanished':
          this.logger.warn({ action: 'job.vanished', requestId: request.requestId, jobId: id, attempt }, 'the queued job is no longer in Redis (restart without persistence, failover, flush)');
          if (attempt > 1) {
            throw new AppError(ErrorCode.ServiceUnavailable, 'the queued job was lost by the queue store (Redis) twice; try again shortly', { retryAfterSeconds: 2 });
          }
      }
    }
  }

  /** Sends a coalesced group: one request as today's single classify job, more as one classify-batch job. */
  private async sendGroup(model: string, jobId: string, items: CoalescedRequest[]): Promise<void> {
    const now = Date.now();
    const deadlineAt = now + this.config.values.JOB_DEADLINE_MS;
    if (items.length === 1) {
      const [item] = items;
      return this.jobs.enqueueClassify(jobId, item.bytes, { requestId: item.requestId, tenant: item.tenant, imageHash: item.imageHash, model, topk: item.topk, enqueuedAt: now, deadlineAt });
    }
    await this.jobs.enqueueClassifyBatch(
      jobId,
      model,
      items.map(({ bytes, requestId, tenant, imageHash, topk }) => ({ bytes, data: { requestId, tenant, imageHash, topk, enqueuedAt: now, deadlineAt } })),
    );
  }

  /** The client hung up: its job is dropped unless a worker already holds it (then it finishes, unread). */
  private async abandon(jobId: string, requestId: string): Promise<void> {
    const dropped = await this.jobs.dropAbandoned(jobId).catch(() => false);
    this.metrics.abandonedJobs.inc({ outcome: dropped ? 'dropped' : 'running' });
    this.logger.info({ action: 'job.abandoned', requestId, jobId, dropped }, dropped ? 'client left before a worker took the job: dropped' : 'client left while a worker runs the job');
  }
}

export function parseTopK(value: string | number | undefined): number {
  if (value === undefined || value === '') return TOPK_DEFAULT;
  const topk = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(topk) || topk < TOPK_MIN || topk > TOPK_MAX) {
    throw new AppError(ErrorCode.InvalidParameter, `topk must be a whole number from ${TOPK_MIN} to ${TOPK_MAX}, got ${echoed(String(value))}`);
  }
  return topk;
}
