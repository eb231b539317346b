import { ApiProperty } from '@nestjs/swagger';
import { ErrorCode } from '@app/contracts';

export class ErrorDetailDto {
  @ApiProperty({ enum: ErrorCode, example: ErrorCode.UnknownModel }) code!: ErrorCode;
  @ApiProperty({ example: 'unknown model "resnet"; valid models: mobilenet_v2, squeezenet1_1' }) message!: string;
  @ApiProperty({ required: false, type: Object }) details?: Record<string, unknown>;
}

/** Every error answer has this shape. */
export class ErrorResponseDto {
  @ApiProperty({ type: ErrorDetailDto }) error!: ErrorDetailDto;
}

/** POST /predict's error shape, for the original work-queue client (it reads `success` first). */
export class LegacyErrorResponseDto {
  @ApiProperty({ example: false }) success!: boolean;
  @ApiProperty({ type: ErrorDetailDto }) error!: ErrorDetailDto;
}
