import { Controller, HttpCode, Post, Req } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBadRequestResponse, ApiBody, ApiConsumes, ApiExtraModels, ApiOperation, ApiPayloadTooLargeResponse, ApiProperty, ApiTags, ApiUnsupportedMediaTypeResponse, getSchemaPath } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { AppError, ErrorCode, TenantId } from '@app/contracts';
import { CallerTenant } from '../auth/api-keys';
import { ErrorResponseDto } from '../common/error.dto';
import { requestIdOf } from '../common/request-id';
import { ImageUploadReader, jsonObjectBody } from '../uploads/image-upload.reader';
import { ImageFetcher } from '../url-intake/image-fetcher';
import { AnalysisService } from './analysis.service';

export class ModelStatusDto {
  @ApiProperty({ enum: ['waiting', 'active', 'completed', 'failed'] }) state!: string;
  @ApiProperty({ description: "true when the result was already in this tenant's store: nothing new was computed" }) cached!: boolean;
  @ApiProperty({ example: '/v1/images/<hash>/results/yolox_nano' }) url!: string;
}

class SubmittedImageDto {
  @ApiProperty({ description: 'sha256 of the image bytes: its id from now on (within your tenant)' }) hash!: string;
  @ApiProperty({ type: 'object', additionalProperties: { $ref: getSchemaPath(ModelStatusDto) } }) models!: Record<string, ModelStatusDto>;
}

export class AnalysisAcceptedDto {
  @ApiProperty({ type: [SubmittedImageDto] }) images!: SubmittedImageDto[];
}

@ApiTags('analyses')
@ApiExtraModels(ModelStatusDto)
@Controller('v1/analyses')
export class AnalysesController {
  constructor(
    private readonly analyses: AnalysisService,
    private readonly uploads: ImageUploadReader,
    private readonly fetcher: ImageFetcher,
  ) {}

  @Post()
  @HttpCode(202)
  @ApiOperation({ summary: "Queue every (image, model) pair; read results later by image hash. Pairs already in the caller's result store are answered from it." })
  @ApiConsumes('multipart/form-data', 'application/json')
  @ApiBody({
    schema: {
      type: 'object',
      required: ['models'],
      properties: {
        images: { type: 'array', items: { type: 'string', format: 'binary' }, description: 'multipart: repeat the field; JSON: base64 strings' },
        models: { type: 'string', example: 'mobilenet_v2,yolox_nano,yunet', description: 'comma list or repeated field (JSON: array)' },
        urls: { type: 'array', items: { type: 'string' }, description: 'JSON only, instead of images: public http(s) URLs to fetch (at most MAX_URLS_PER_REQUEST; FETCH_ALLOW_HOSTS opens private ones)' },
      },
    },
  })
  @ApiAcceptedResponse({ type: AnalysisAcceptedDto })
  @ApiBadRequestResponse({ type: ErrorResponseDto, description: 'UNKNOWN_MODEL (lists the valid ones), INVALID_PARAMETER, IMAGE_MISSING; nothing is stored or queued' })
  @ApiPayloadTooLargeResponse({ type: ErrorResponseDto, description: 'IMAGE_TOO_LARGE; PAYLOAD_TOO_LARGE (too many multipart files or form fields)' })
  @ApiUnsupportedMediaTypeResponse({ type: ErrorResponseDto })
  async submit(@CallerTenant() tenant: TenantId, @Req() request: FastifyRequest): Promise<AnalysisAcceptedDto> {
    const requestId = requestIdOf(request);
    const json = jsonObjectBody(request);
    if (json && 'urls' in json) {
      const { urls, models } = json;
      if (!Array.isArray(urls) || urls.length === 0 || urls.some((url) => typeof url !== 'string')) throw new AppError(ErrorCode.ImageMissing, '"urls" must be a non-empty array of URL strings');
      this.uploads.assertImageCount(urls.length);
      const modelFields = (Array.isArray(models) ? models : [models]).filter((m): m is string => typeof m === 'string');
      return { images: await this.analyses.submit(tenant, requestId, this.fetcher.stageEach(urls as string[], requestId, tenant), modelFields) };
    }
    const { images, fields } = this.uploads.stageMany(request, tenant, 'images');
    return { images: await this.analyses.submit(tenant, requestId, images, () => fields.models ?? []) };
  }
}
