import { ApiProperty } from '@nestjs/swagger';

export class PredictionDto {
  @ApiProperty({ example: 483 }) index!: number;
  @ApiProperty({ example: 'castle' }) label!: string;
  @ApiProperty({ example: 0.7272 }) probability!: number;
}

export class TimingsDto {
  @ApiProperty({ description: 'enqueue until a worker started the job' }) queuedMs!: number;
  @ApiProperty({ description: 'decode and preprocess in the worker' }) decodeMs!: number;
  @ApiProperty({ description: 'the model run of the batch this image was part of' }) inferenceMs!: number;
  @ApiProperty({ description: 'request received until answer ready' }) totalMs!: number;
}

export class ClassifyResponseDto {
  @ApiProperty({ description: 'job id; also readable at GET /v1/jobs/{id}' }) id!: string;
  @ApiProperty({ example: 'mobilenet_v2' }) model!: string;
  @ApiProperty({ type: [PredictionDto] }) predictions!: PredictionDto[];
  @ApiProperty({ type: TimingsDto }) timings!: TimingsDto;
  @ApiProperty({ description: 'images in the model batch this one ran in' }) batchSize!: number;
}

export class JobAcceptedDto {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'waiting' }) state!: string;
  @ApiProperty({ example: '/v1/jobs/3b0c...' }) url!: string;
}

export class LegacyPredictionDto {
  @ApiProperty({ example: 'castle' }) label!: string;
  @ApiProperty({ example: 0.7272 }) probability!: number;
}

export class LegacyPredictResponseDto {
  @ApiProperty({ example: true }) success!: boolean;
  @ApiProperty({ type: [LegacyPredictionDto] }) predictions!: LegacyPredictionDto[];
}

/** OpenAPI description of the three accepted request bodies. */
export const IMAGE_REQUEST_BODY = {
  required: true,
  content: {
    'multipart/form-data': {
      schema: {
        type: 'object',
        required: ['image'],
        properties: {
          image: { type: 'string', format: 'binary', description: 'JPEG, PNG, WebP, GIF (first frame), TIFF, AVIF or HEIC' },
          model: { type: 'string', example: 'mobilenet_v2' },
          topk: { type: 'integer', minimum: 1, maximum: 20, example: 5 },
        },
      },
    },
    'image/jpeg': { schema: { type: 'string', format: 'binary' } },
    'image/png': { schema: { type: 'string', format: 'binary' } },
    'image/webp': { schema: { type: 'string', format: 'binary' } },
    'image/heic': { schema: { type: 'string', format: 'binary' } },
    'application/octet-stream': { schema: { type: 'string', format: 'binary', description: 'any accepted image format; the format is read from the bytes' } },
    'application/json': {
      schema: {
        type: 'object',
        required: ['image'],
        properties: {
          image: { type: 'string', format: 'byte', description: 'base64 (a data: URL prefix is accepted)' },
          model: { type: 'string' },
          topk: { type: 'integer' },
        },
      },
    },
  },
};
