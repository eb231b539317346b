import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { AnalyzeJobData, AppError, ClassifyBatchJobData, ClassifyBatchJobResult, ClassifyJobData, decodeJobError, ErrorCode, InferenceJobName, isImageFault, MatchFacesJobData } from '@app/contracts';
import type { AnalysisStore } from '@app/storage/analysis-store';
import { CrashSubject, FACES_CRASH_SUBJECT, PoisonImages, poisonError, poisonFailureRecord } from '@app/storage/poison-images';
import { workerId } from '../worker-id';

/** What this worker knows of a job it runs, for telling a dead holder from a live one (see PoisonWatch). */
interface Running {
  subjects: CrashSubject[];
  /** BullMQ could not renew the job's lock while this worker ran it: another worker may be running it too. */
  lapsed: boolean;
  /** process() has returned; the entry waits for BullMQ's record of the end (or its refusal: lock lost). */
  ended: boolean;
  /** The subjects the run proved safe (run to the end), kept for a lock lost on finishing. */
  proven: CrashSubject[];
}

/** Runs remembered at once at most (they leave on completed/failed; the cap bounds what a lost event leaves). */
const MAX_TRACKED = 4096;

/**
 * Counts worker deaths against images, and stops giving a poison image to workers (PoisonImages has the why).
 *
 * Telling "the worker holding the job died" from "its lock lapsed while it lived", with what BullMQ shows us:
 * - counted: a job BullMQ fails as "job stalled more than allowable limit" (its lock lapsed twice). This worker sees
 *   it in its `failed` event: BullMQ 6 defers that failure to the next worker that fetches the job.
 * - refuted: a worker that runs the image to its end (a result, or an image fault such as a decode error) proves it
 *   does not kill, and clears the count, in two cases that cost nothing on a normal job: the job had come back after
 *   a lapse (`stalledCounter > 0`), or this worker's own lock on it lapsed while it ran (BullMQ's `lockRenewalFailed`,
 *   or a lock lost when recording the end: a live worker that was slow or starved, whose lapse was counted as a
 *   death). The count is since the last such proof, so a live worker's lapses are forgiven once it finishes.
 * - refused: a job that comes back after a lapse is checked first (one HGET), so a poison image queued before its
 *   verdict is not run again; new work is checked by the API before it is queued.
 * Worker liveness by heartbeat (the worker registry) is not used: a worker whose event loop is blocked, the usual
 * cause of a live lapse, misses its heartbeats too, so only finishing tells it apart from a dead one.
 * (No Nest decorators: built by a factory in WorkerModule, so its spec loads it without Nest.)
 */
export class PoisonWatch {
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly poison: PoisonImages,
    private readonly results: Pick<AnalysisStore, 'putResult'>,
    /** A model's task (the analysis record names it), from the worker's catalog. */
    private readonly taskOf: (model: string) => string | undefined,
    private readonly logger: Logger,
  ) {}

  /** The (tenant, image, model) triples a job's image work is counted against; none for jobs that carry no hash. */
  static subjectsOf(job: Job): CrashSubject[] {
    const data = job.data as Partial<AnalyzeJobData & MatchFacesJobData & ClassifyJobData & ClassifyBatchJobData> | undefined;
    if (!data || typeof data !== 'object') return [];
    switch (job.name) {
      case InferenceJobName.Analyze:
      case InferenceJobName.Classify:
        return data.tenant && data.imageHash && data.model ? [{ tenant: data.tenant, imageHash: data.imageHash, model: data.model }] : [];
      case InferenceJobName.MatchFaces:
        return data.tenant && data.imageHash ? [{ tenant: data.tenant, imageHash: data.imageHash, model: FACES_CRASH_SUBJECT }] : [];
      case InferenceJobName.ClassifyBatch: {
        const model = data.model;
        if (!model || !Array.isArray(data.items)) return [];
        const seen = new Map<string, CrashSubject>();
        for (const item of data.items) if (item?.tenant && item.imageHash) seen.set(`${item.tenant}\n${item.imageHash}`, { tenant: item.tenant, imageHash: item.imageHash, model });
        return [...seen.values()];
      }
      default:
        return [];
    }
  }

  /**
   * Before a job runs. A job back after a lapse (`stalledCounter > 0`) whose image is poison is refused with
   * IMAGE_CRASHED_WORKER before its image is read (a coalesced job's items were checked one by one by the API and
   * run on). Otherwise only remembered in memory.
   */
  async starting(job: Job): Promise<void> {
    const subjects = PoisonWatch.subjectsOf(job);
    if (subjects.length === 0) return;
    if (job.stalledCounter > 0 && job.name !== InferenceJobName.ClassifyBatch) {
      for (const subject of subjects) if (await this.poison.isPoison(subject)) throw poisonError(subject.model);
    }
    if (this.running.size >= MAX_TRACKED) this.running.delete(this.running.keys().next().value as string);
    this.running.set(String(job.id), { subjects, lapsed: false, ended: false, proven: [] });
  }

  /**
   * After process() returned (`outcome.result`) or threw (`outcome.error`). The subjects the run proved safe are
   * cleared now if the job had lapsed before or while it ran, else kept until BullMQ records the end.
   */
  async ended(job: Job, outcome: { result?: unknown; error?: unknown }): Promise<void> {
    const run = this.running.get(String(job.id));
    if (!run) return;
    run.ended = true;
    run.proven = provenSafe(job, run.subjects, outcome);
    // A job queued with a crash count (ClassifyJobData.crashCount) proves it too: the image ran to its end.
    const counted = Number((job.data as { crashCount?: unknown } | undefined)?.crashCount ?? 0) > 0;
    if (run.lapsed || job.stalledCounter > 0 || counted) {
      await this.clear(job, run, run.lapsed ? 'lock lapsed while this worker ran the job' : job.stalledCounter > 0 ? 'the job came back after a lapse and was run to its end' : 'the image had a crash count and ran to its end');
    }
  }

  /** BullMQ recorded the job's end (completed or failed): nothing more to learn from it. */
  settled(jobId: string | undefined): void {
    if (jobId !== undefined) this.running.delete(jobId);
  }

  /** BullMQ could not renew these jobs' locks (this worker is alive: another worker may run them meanwhile). */
  locksLapsed(jobIds: string[]): void {
    for (const id of jobIds) {
      const run = this.running.get(id);
      if (run) run.lapsed = true;
    }
  }

  /** BullMQ refused to record the end of a job this worker ran (its lock was gone): it lived through the lapse. */
  async lockLostOnFinish(jobId: string): Promise<void> {
    const run = this.running.get(jobId);
    if (run?.ended) await this.clear({ id: jobId }, run, 'lock lost by the time this worker recorded the end');
  }

  /**
   * A job failed at BullMQ's stalled limit: its holders died twice (or lost its lock twice). Counted against each
   * subject (a coalesced job's images only become suspects: PoisonImages.countCrash); one that reaches the limit is poison from now on: logged `image.poison`, and an analysis pair gets its
   * failure record (so reads of the pair answer it instead of queueing the job again).
   */
  async stalledTooOften(job: Job): Promise<void> {
    this.settled(job.id);
    const coalesced = job.name === InferenceJobName.ClassifyBatch;
    for (const subject of PoisonWatch.subjectsOf(job)) {
      try {
        const crashes = await this.poison.countCrash(subject, coalesced);
        if (crashes === 0) {
          // Another job of this image failed at the limit within the same incident (LOCK_DURATION_MS): counted once.
          this.logger.info({ action: 'image.crash_same_incident', jobId: job.id, jobName: job.name, tenant: subject.tenant, imageHash: subject.imageHash, model: subject.model, coalesced, workerId }, 'a stalled-limit failure within the incident already counted against this image: not counted again');
          continue;
        }
        if (coalesced) {
          // Any of the job's images (of any tenant) may be the one that kills: none is condemned by it. Each becomes a
          // suspect, which the API sends alone from now on, so a poison image's own deaths are counted next time.
          this.logger.warn({ action: 'image.crash_suspect', jobId: job.id, jobName: job.name, tenant: subject.tenant, imageHash: subject.imageHash, model: subject.model, crashes, workerId }, 'a coalesced job carrying this image lost its worker twice (stalled limit): the image is sent alone from now on');
          continue;
        }
        const context = { jobId: job.id, jobName: job.name, tenant: subject.tenant, imageHash: subject.imageHash, model: subject.model, crashes, limit: this.poison.limit, workerId };
        if (crashes < this.poison.limit) {
          this.logger.warn({ action: 'image.crash_counted', ...context }, 'a job of this image lost its worker twice (stalled limit): counted against the image');
          continue;
        }
        if (crashes > this.poison.limit) continue;
        if (job.name === InferenceJobName.Analyze) await this.storeFailure(subject);
        this.logger.error({ action: 'image.poison', ...context }, 'this image killed the workers holding it too often: it is not given to workers for this model again');
      } catch (error) {
        this.logger.warn({ action: 'image.crash_count_failed', jobId: job.id, tenant: subject.tenant, imageHash: subject.imageHash, model: subject.model, err: error }, 'a stalled-limit failure could not be counted against its image');
      }
    }
  }

  private async storeFailure(subject: CrashSubject): Promise<void> {
    await this.results.putResult(subject.tenant, subject.imageHash, poisonFailureRecord(subject.model, this.taskOf(subject.model), workerId), this.poison.ttlSeconds);
  }

  private async clear(job: { id?: string }, run: Running, why: string): Promise<void> {
    this.running.delete(String(job.id));
    for (const subject of run.proven) {
      try {
        if (await this.poison.clear(subject)) this.logger.info({ action: 'image.crash_record_cleared', jobId: job.id, tenant: subject.tenant, imageHash: subject.imageHash, model: subject.model, why, workerId }, 'the image ran to its end on a live worker: its crash count is forgiven');
      } catch (error) {
        this.logger.warn({ action: 'image.crash_clear_failed', jobId: job.id, err: error }, 'a crash count could not be cleared');
      }
    }
  }
}

/**
 * The subjects whose image this run took through decoding and inference without dying: a returned result (an
 * analysis or face job that did the work, not one that found a stored result or an erased image), or an image fault
 * (the decoder's own verdict). Expired bytes, Redis trouble or a refusal prove nothing. A coalesced job: per item.
 */
function provenSafe(job: Job, subjects: CrashSubject[], { result, error }: { result?: unknown; error?: unknown }): CrashSubject[] {
  if (error !== undefined) return error instanceof AppError && isImageFault(error.code) && error.code !== ErrorCode.ImageCrashedWorker ? subjects : [];
  const value = result as { reused?: boolean; erased?: boolean; state?: string } | undefined;
  if (value?.reused || value?.erased || value?.state === 'erased') return [];
  if (job.name !== InferenceJobName.ClassifyBatch) return subjects;
  const items = (job.data as ClassifyBatchJobData).items;
  const outcomes = (result as ClassifyBatchJobResult | undefined)?.items ?? [];
  const safe = new Set<string>();
  items.forEach((item, i) => {
    const outcome = outcomes[i];
    if (outcome && ('result' in outcome || isImageFault(decodeJobError(outcome.error).code))) safe.add(`${item.tenant}\n${item.imageHash}`);
  });
  return subjects.filter((subject) => safe.has(`${subject.tenant}\n${subject.imageHash}`));
}
