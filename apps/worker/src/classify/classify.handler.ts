import { Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import { AppConfig } from '@app/config';
import { ClassifyJobData, ClassifyJobResult } from '@app/contracts';
import { prepareModelInput } from '@app/imaging';
import { classificationPredictions } from '@app/models';
import { ImageSource } from '../inference/image-source';
import { ModelHost } from '../inference/model-host';
import { workerId } from '../worker-id';

/** classify jobs: decode → preprocess → batched model run → top-k labels. Pure function of the image: safe to run twice. */
@Injectable()
export class ClassifyHandler {
  constructor(
    private readonly models: ModelHost,
    private readonly images: ImageSource,
    private readonly config: AppConfig,
  ) {}

  async handle(job: Job<ClassifyJobData>, startedAt: number): Promise<ClassifyJobResult> {
    const { model: modelName, topk, enqueuedAt } = job.data;
    const model = this.models.catalog.get(modelName, 'classification');
    const bytes = await this.images.read(job.data.image);
    const input = await prepareModelInput(bytes, model.preprocess, this.config.values.MAX_IMAGE_PIXELS);
    const run = await this.models.executor.run(model.name, input.tensor);
    const predictions = classificationPredictions(run.output[model.outputs[0]], model.postprocess.activation, topk, model.labelList);
    const finishedAt = Date.now();
    return {
      model: model.name,
      predictions,
      batchSize: run.batchSize,
      timings: {
        queuedMs: Math.max(0, startedAt - enqueuedAt),
        decodeMs: round(input.decodeMs),
        inferenceMs: round(run.batchMs),
        totalMs: Math.max(0, finishedAt - enqueuedAt),
      },
      workerId,
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
