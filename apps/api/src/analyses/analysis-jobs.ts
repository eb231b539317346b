import { Injectable } from '@nestjs/common';
import { AnalysisRecord, AnalysisState, AnalyzeJobData, analyzeJobId, InferenceJobName, JobPriority, TenantId } from '@app/contracts';
import { AnalysisStore, PoisonImages, poisonFailureRecord } from '@app/storage';
import { InferenceQueue } from '../jobs/inference-queue';
import { ModelDirectory } from '../models/model-directory';

export interface ModelStatus {
  state: AnalysisState;
  cached: boolean;
  url: string;
}

/**
 * The (tenant, image hash, model) triples as jobs: one deterministic job id per triple, so a pair that is
 * queued or running is joined rather than added again, from any API process (BullMQ ignores an add whose id
 * exists). Every read goes to the tenant's own results: whether another tenant computed the same pair says
 * nothing here.
 */
@Injectable()
export class AnalysisJobs {
  constructor(
    private readonly jobs: InferenceQueue,
    private readonly results: AnalysisStore,
    private readonly poison: PoisonImages,
    private readonly directory: ModelDirectory,
  ) {}

  static resultUrl(hash: string, model: string): string {
    return `/v1/images/${hash}/results/${model}`;
  }

  /**
   * Where the pair stands now; queues it when it has neither a result nor a job (new, or expired). A pair whose
   * image is poison for the model (it killed the workers running it, maybe through /v1/classify) gets its failure
   * record here instead (IMAGE_CRASHED_WORKER), so later reads answer it without queueing anything.
   */
  async ensure(tenant: TenantId, hash: string, model: string, requestId: string): Promise<ModelStatus> {
    const url = AnalysisJobs.resultUrl(hash, model);
    const stored = await this.results.getResult(tenant, hash, model);
    if (stored) return { state: stored.state, cached: true, url };
    if (await this.poison.isPoison({ tenant, imageHash: hash, model })) return this.storePoisonFailure(tenant, hash, model, url);
    await this.jobs.assertCapacity();
    const jobId = analyzeJobId(tenant, hash, model);
    const data: AnalyzeJobData = { requestId, tenant, imageHash: hash, model, enqueuedAt: Date.now() };
    // The result store keeps answers and permanent failures, so finished jobs leave at once and an expired
    // result can be queued again.
    await this.jobs.addDeduplicated(InferenceJobName.Analyze, data, jobId, JobPriority.Bulk, 0);
    const state = await this.jobs.getStateById(jobId);
    // Finished between our result check and now: the result store has it.
    if (state === 'completed' || state === 'unknown' || state === 'failed') {
      const now = await this.results.getResult(tenant, hash, model);
      if (now) return { state: now.state, cached: false, url };
    }
    return { state: state === 'unknown' ? 'waiting' : state, cached: false, url };
  }

  /** The pair's permanent failure for a poison image (as the worker that declared it writes one), kept POISON_TTL_SECONDS. */
  private async storePoisonFailure(tenant: TenantId, hash: string, model: string, url: string): Promise<ModelStatus> {
    const task = this.directory.catalog.has(model) ? this.directory.catalog.get(model).task : undefined;
    await this.results.putResult(tenant, hash, poisonFailureRecord(model, task, 'api'), this.poison.ttlSeconds);
    return { state: 'failed', cached: false, url };
  }


  assertCapacity(): Promise<void> {
    return this.jobs.assertCapacity();
  }

  /**
   * The pair's stored record, or its job's state when there is none. The job's state is read first: a worker
   * writes the record before its job completes, so a finished job's record is always seen here (reading the
   * record first could miss it, then see the job completed: "completed" without a result).
   */
  async lookup(tenant: TenantId, hash: string, model: string): Promise<{ record: AnalysisRecord } | { state: AnalysisState }> {
    const state = await this.jobs.getStateById(analyzeJobId(tenant, hash, model));
    const record = await this.results.getResult(tenant, hash, model);
    return record ? { record } : { state };
  }
}
