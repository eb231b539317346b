import { Controller, Get, Param } from '@nestjs/common';
import { ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { AppError, ClassifyBatchJobData, decodeJobError, ErrorBody, ErrorCode, InferenceJobName, JobState, parseClassifyId, TenantId } from '@app/contracts';
import { itemOutcome } from './classify-item-outcome';
import { CallerTenant } from '../auth/api-keys';
import { ErrorDetailDto, ErrorResponseDto } from '../common/error.dto';
import { InferenceQueue } from './inference-queue';

export class JobStatusDto {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'classify' }) name!: string;
  @ApiProperty({ enum: ['waiting', 'active', 'completed', 'failed', 'unknown'] }) state!: JobState;
  @ApiProperty({ required: false, description: 'the job result when completed', type: Object }) result?: unknown;
  @ApiProperty({ required: false, type: ErrorDetailDto }) error?: ErrorBody;
  @ApiProperty() createdAt!: string;
  @ApiProperty({ required: false }) finishedAt?: string;
  @ApiProperty() attempts!: number;
}

/**
 * The ids this route answers for: a classify job's random UUID (what POST /v1/classify hands out), or
 * `<uuid>.<index>` for one request's item of a coalesced classify-batch job (parseClassifyId). Analysis and
 * face jobs have ids derived from tenant and image — computable by anyone who has the photo — so they are not
 * looked up at all: no answer, and no timing, says whether such a job exists. Their results are read by image.
 */
@ApiTags('jobs')
@Controller('v1/jobs')
export class JobsController {
  constructor(private readonly jobs: InferenceQueue) {}

  @Get(':id')
  @ApiOperation({ summary: "State and result or error of one of the caller's classify jobs (kept for COMPLETED_JOB_TTL_SECONDS / FAILED_JOB_TTL_SECONDS); another tenant's job is 404" })
  @ApiOkResponse({ type: JobStatusDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto, description: 'JOB_NOT_FOUND' })
  async get(@CallerTenant() tenant: TenantId, @Param('id') id: string): Promise<JobStatusDto> {
    const parsed = parseClassifyId(id);
    // State first, then the job: a job read before its state could look completed without its result.
    const state = parsed ? await this.jobs.getStateById(parsed.jobId) : 'unknown';
    const job = state === 'unknown' || !parsed ? undefined : await this.jobs.getJob(parsed.jobId);
    // Another tenant's job (or item) is answered exactly as a job that does not exist.
    const notFound = () => new AppError(ErrorCode.JobNotFound, `no job with id "${id}" (finished jobs are kept for a limited time)`);
    if (!parsed || !job) throw notFound();
    const times = {
      createdAt: isoTime(job.timestamp) ?? new Date(0).toISOString(),
      ...(isoTime(job.finishedOn) ? { finishedAt: isoTime(job.finishedOn) } : {}),
      attempts: job.attemptsMade ?? 0,
    };
    const failure = state === 'failed' ? { error: decodeJobError(job.failedReason) } : {};
    if (parsed.index === undefined) {
      if (job.data?.tenant !== tenant) throw notFound();
      return { id, name: job.name, state, ...(state === 'completed' ? { result: job.returnvalue } : {}), ...failure, ...times };
    }
    // One request's item of a coalesced job: the tenant is the item's, and so is the outcome.
    const item = job.name === InferenceJobName.ClassifyBatch ? (job.data as ClassifyBatchJobData | undefined)?.items?.[parsed.index] : undefined;
    if (!item || item.tenant !== tenant) throw notFound();
    const outcome = state === 'completed' ? itemOutcome(job.returnvalue, parsed.index) : undefined;
    const own = outcome?.state === 'completed' ? { result: outcome.result } : outcome?.state === 'failed' ? { error: outcome.error } : failure;
    return { id, name: InferenceJobName.Classify, state: outcome?.state === 'failed' ? 'failed' : state, ...own, ...times };
  }
}

/** An epoch-ms field of a job record as ISO text; undefined when missing or not a time (a partial record). */
function isoTime(epochMs: number | undefined): string | undefined {
  return typeof epochMs === 'number' && Number.isFinite(epochMs) ? new Date(epochMs).toISOString() : undefined;
}
