import { Controller, HttpCode, Post, Query, Req, Res, UseFilters } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBadRequestResponse,
  ApiBody,
  ApiConsumes,
  ApiOkResponse,
  ApiOperation,
  ApiPayloadTooLargeResponse,
  ApiQuery,
  ApiTags,
  ApiUnprocessableEntityResponse,
  ApiUnsupportedMediaTypeResponse,
  ApiServiceUnavailableResponse,
  ApiGatewayTimeoutResponse,
  ApiInternalServerErrorResponse,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ErrorCode, TenantId } from '@app/contracts';
import { CallerTenant } from '../auth/api-keys';
import { CLIENT_CLOSED_REQUEST, clientGoneSignal } from '../common/client-gone';
import { ErrorResponseDto, LegacyErrorResponseDto } from '../common/error.dto';
import { LegacyPredictExceptionFilter } from '../common/api-exception.filter';
import { requestIdOf } from '../common/request-id';
import { ImageUploadReader } from '../uploads/image-upload.reader';
import { ClassifyResponseDto, IMAGE_REQUEST_BODY, JobAcceptedDto, LegacyPredictResponseDto } from './classify.dto';
import { ClassifyService } from './classify.service';

@ApiTags('classify')
@Controller()
export class ClassifyController {
  constructor(
    private readonly classifier: ClassifyService,
    private readonly uploads: ImageUploadReader,
  ) {}

  @Post('v1/classify')
  @HttpCode(200)
  @ApiOperation({ summary: 'Classify one image (ImageNet top-k); waits for the worker up to REQUEST_WAIT_MS' })
  @ApiConsumes('multipart/form-data', 'image/jpeg', 'image/png', 'image/webp', 'image/heic', 'application/octet-stream', 'application/json')
  @ApiBody(IMAGE_REQUEST_BODY)
  @ApiQuery({ name: 'model', required: false, description: 'classification model name (GET /v1/models)', example: 'mobilenet_v2' })
  @ApiQuery({ name: 'topk', required: false, description: 'how many labels (top-k), 1–20', schema: { type: 'integer', minimum: 1, maximum: 20, default: 5 } })
  @ApiOkResponse({ type: ClassifyResponseDto })
  @ApiAcceptedResponse({ type: JobAcceptedDto, description: 'not finished within the wait limit; poll the Location URL' })
  @ApiBadRequestResponse({ type: ErrorResponseDto, description: 'IMAGE_MISSING, IMAGE_EMPTY, INVALID_BASE64, UNKNOWN_MODEL, INVALID_PARAMETER' })
  @ApiPayloadTooLargeResponse({ type: ErrorResponseDto, description: 'IMAGE_TOO_LARGE; PAYLOAD_TOO_LARGE (too many multipart files or form fields)' })
  @ApiUnsupportedMediaTypeResponse({ type: ErrorResponseDto, description: 'IMAGE_UNSUPPORTED_FORMAT, UNSUPPORTED_MEDIA_TYPE' })
  @ApiUnprocessableEntityResponse({ type: ErrorResponseDto, description: 'IMAGE_TOO_MANY_PIXELS, IMAGE_DECODE_FAILED, IMAGE_CRASHED_WORKER' })
  @ApiServiceUnavailableResponse({ type: ErrorResponseDto, description: 'QUEUE_FULL, SERVICE_UNAVAILABLE' })
  @ApiGatewayTimeoutResponse({ type: ErrorResponseDto, description: 'DEADLINE_EXCEEDED' })
  @ApiInternalServerErrorResponse({ type: ErrorResponseDto, description: 'INFERENCE_FAILED' })
  async classify(
    @CallerTenant() tenant: TenantId,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
    @Query('model') model?: string,
    @Query('topk') topk?: string,
  ): Promise<ClassifyResponseDto | JobAcceptedDto> {
    const answer = await this.classifyUpload(tenant, request, reply, model, topk);
    // Freed only after a normal return, when everything that read the bytes has settled (ImageUploadReader.release).
    this.uploads.release(request);
    return answer;
  }

  private async classifyUpload(tenant: TenantId, request: FastifyRequest, reply: FastifyReply, model?: string, topk?: string): Promise<ClassifyResponseDto | JobAcceptedDto> {
    const upload = await this.uploads.read(request, reply);
    const outcome = await this.classifier.classify({
      requestId: requestIdOf(request),
      tenant,
      bytes: upload.bytes,
      model: model ?? upload.fields.model,
      topk: topk ?? upload.fields.topk,
      signal: clientGoneSignal(reply),
    });
    switch (outcome.kind) {
      case 'completed':
        return {
          id: outcome.jobId,
          model: outcome.result.model,
          predictions: outcome.result.predictions,
          batchSize: outcome.result.batchSize,
          timings: { ...outcome.result.timings, totalMs: outcome.totalMs },
        };
      case 'failed':
        throw new AppError(outcome.error.code, outcome.error.message, outcome.error.details);
      case 'pending': {
        const url = `/v1/jobs/${outcome.jobId}`;
        reply.status(202).header('location', url);
        return { id: outcome.jobId, state: 'waiting', url };
      }
      case 'abandoned':
        reply.status(CLIENT_CLOSED_REQUEST);
        return { id: outcome.jobId, state: 'abandoned', url: '' };
    }
  }

  @Post('predict')
  @HttpCode(200)
  @UseFilters(LegacyPredictExceptionFilter)
  @ApiOperation({ summary: 'Compatibility with the original work-queue client: multipart field "image", top 5 of the default model' })
  @ApiConsumes('multipart/form-data')
  @ApiBody({ schema: { type: 'object', required: ['image'], properties: { image: { type: 'string', format: 'binary' } } } })
  @ApiOkResponse({ type: LegacyPredictResponseDto })
  @ApiBadRequestResponse({ type: LegacyErrorResponseDto, description: 'every error of this route: { success: false, error: { code, message } }' })
  @ApiUnsupportedMediaTypeResponse({ type: LegacyErrorResponseDto })
  @ApiPayloadTooLargeResponse({ type: LegacyErrorResponseDto })
  @ApiUnprocessableEntityResponse({ type: LegacyErrorResponseDto })
  async predict(@CallerTenant() tenant: TenantId, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Promise<LegacyPredictResponseDto> {
    const answer = await this.predictUpload(tenant, request, reply);
    this.uploads.release(request);
    return answer;
  }

  private async predictUpload(tenant: TenantId, request: FastifyRequest, reply: FastifyReply): Promise<LegacyPredictResponseDto> {
    const upload = await this.uploads.read(request, reply);
    const outcome = await this.classifier.classify({ requestId: requestIdOf(request), tenant, bytes: upload.bytes, signal: clientGoneSignal(reply) });
    if (outcome.kind === 'completed') {
      return { success: true, predictions: outcome.result.predictions.map(({ label, probability }) => ({ label, probability })) };
    }
    if (outcome.kind === 'failed') throw new AppError(outcome.error.code, outcome.error.message, outcome.error.details);
    if (outcome.kind === 'abandoned') {
      reply.status(CLIENT_CLOSED_REQUEST);
      return { success: false, predictions: [] };
    }
    throw new AppError(ErrorCode.DeadlineExceeded, `no answer within the wait limit; the result will be at /v1/jobs/${outcome.jobId}`, { jobId: outcome.jobId });
  }
}

