import { Controller, Get, Param } from '@nestjs/common';
import { ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { AppError, decodeJobError, ErrorBody, ErrorCode, JobState, TenantId } from '@app/contracts';
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
 * The ids this route answers for: a classify job's random UUID (what POST /v1/classify hands out). Analysis and
 * face jobs have ids derived from tenant and image — computable by anyone who has the photo — so they are not
 * looked up at all: no answer, and no timing, says whether such a job exists. Their results are read by image.
 */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

@ApiTags('jobs')
@Controller('v1/jobs')
export class JobsController {
  constructor(private readonly jobs: InferenceQueue) {}

  @Get(':id')
  @ApiOperation({ summary: "State and result or error of one of the caller's classify jobs (kept for COMPLETED_JOB_TTL_SECONDS / FAILED_JOB_TTL_SECONDS); another tenant's job is 404" })
  @ApiOkResponse({ type: JobStatusDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto, description: 'JOB_NOT_FOUND' })
  async get(@CallerTenant() tenant: TenantId, @Param('id') id: string): Promise<JobStatusDto> {
    // State first, then the job: a job read before its state could look completed without its result.
    const state = JOB_ID.test(id) ? await this.jobs.getStateById(id) : 'unknown';
    const job = state === 'unknown' ? undefined : await this.jobs.getJob(id);
    // Another tenant's job is answered exactly as a job that does not exist.
    if (!job || job.data?.tenant !== tenant) throw new AppError(ErrorCode.JobNotFound, `no job with id "${id}" (finished jobs are kept for a limited time)`);
    return {
      id,
      name: job.name,
      state,
      ...(state === 'completed' ? { result: job.returnvalue } : {}),
      ...(state === 'failed' ? { error: decodeJobError(job.failedReason) } : {}),
      createdAt: isoTime(job.timestamp) ?? new Date(0).toISOString(),
      ...(isoTime(job.finishedOn) ? { finishedAt: isoTime(job.finishedOn) } : {}),
      attempts: job.attemptsMade ?? 0,
    };
  }
}

/** An epoch-ms field of a job record as ISO text; undefined when missing or not a time (a partial record). */
function isoTime(epochMs: number | undefined): string | undefined {
  return typeof epochMs === 'number' && Number.isFinite(epochMs) ? new Date(epochMs).toISOString() : undefined;
}
