import { Controller, Get, Param } from '@nestjs/common';
import { ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { AppError, decodeJobError, ErrorBody, ErrorCode, JobState } from '@app/contracts';
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

const JOB_ID = /^[A-Za-z0-9:_-]{1,200}$/;

@ApiTags('jobs')
@Controller('v1/jobs')
export class JobsController {
  constructor(private readonly jobs: InferenceQueue) {}

  @Get(':id')
  @ApiOperation({ summary: 'State and result or error of any job (kept for COMPLETED_JOB_TTL_SECONDS / FAILED_JOB_TTL_SECONDS)' })
  @ApiOkResponse({ type: JobStatusDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto, description: 'JOB_NOT_FOUND' })
  async get(@Param('id') id: string): Promise<JobStatusDto> {
    // State first, then the job: a job read before its state could look completed without its result.
    const state = JOB_ID.test(id) ? await this.jobs.getStateById(id) : 'unknown';
    const job = state === 'unknown' ? undefined : await this.jobs.getJob(id);
    if (!job) throw new AppError(ErrorCode.JobNotFound, `no job with id "${id}" (finished jobs are kept for a limited time)`);
    return {
      id,
      name: job.name,
      state,
      ...(state === 'completed' ? { result: job.returnvalue } : {}),
      ...(state === 'failed' ? { error: decodeJobError(job.failedReason) } : {}),
      createdAt: new Date(job.timestamp).toISOString(),
      ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
      attempts: job.attemptsMade,
    };
  }
}
