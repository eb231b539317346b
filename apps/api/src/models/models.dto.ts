import { ApiProperty } from '@nestjs/swagger';

export class ModelInfoDto {
  @ApiProperty({ example: 'mobilenet_v2' }) name!: string;
  @ApiProperty({ example: 'classification' }) task!: string;
  @ApiProperty() description!: string;
  @ApiProperty() file!: string;
  @ApiProperty() sha256!: string;
  @ApiProperty({ example: { name: 'input', dtype: 'float32', shape: [-1, 3, 224, 224] } }) input!: object;
  @ApiProperty({ type: [String] }) outputs!: string[];
  @ApiProperty() preprocess!: object;
  @ApiProperty() postprocess!: object;
  @ApiProperty({ nullable: true, type: String }) labels!: string | null;
  @ApiProperty({ example: 1000 }) classes!: number;
  @ApiProperty({ example: 8 }) maxBatchSize!: number;
  @ApiProperty() licence!: string;
  @ApiProperty() source!: string;
  @ApiProperty({ description: 'live workers that have this model loaded' }) loadedBy!: number;
  @ApiProperty() loaded!: boolean;
}

export class WorkerInfoDto {
  @ApiProperty({ example: 'host:1234' }) workerId!: string;
  @ApiProperty({ type: [String] }) models!: string[];
  @ApiProperty() startedAt!: string;
  @ApiProperty() eventLoopDelayP99Ms!: number;
}

export class ModelListDto {
  @ApiProperty({ type: [ModelInfoDto] }) models!: ModelInfoDto[];
  @ApiProperty({ type: [WorkerInfoDto] }) workers!: WorkerInfoDto[];
}
