import { Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import { ClassifyJobData, ClassifyJobResult } from '@app/contracts';
import { CatalogModel, classificationPredictions } from '@app/models';
import type { ImageRun } from '../inference/infer-image';
import { ImageInference } from '../inference/image-inference';
import { ModelHost } from '../inference/model-host';
import { workerId } from '../worker-id';

/** classify jobs: decode → preprocess → batched model run → top-k labels. Pure function of the image: safe to run twice. */
@Injectable()
export class ClassifyHandler {
  constructor(
    private readonly models: ModelHost,
    private readonly inference: ImageInference,
  ) {}

  async handle(job: Job<ClassifyJobData>, startedAt: number): Promise<ClassifyJobResult> {
    const { model: modelName, topk, enqueuedAt } = job.data;
    const model = this.models.catalog.get(modelName, 'classification');
    return classifyResult(model, await this.inference.run(model, job.data.image), topk, startedAt, enqueuedAt);
  }
}

/**
 * A classification's answer from its image's run: the top-k labels and the timings (ms) from when the API queued
 * it (`enqueuedAt`) and a worker started its job (`startedAt`), both epoch ms. Shared by single and coalesced jobs.
 */
export function classifyResult(model: CatalogModel, { input, run }: ImageRun, topk: number, startedAt: number, enqueuedAt: number): ClassifyJobResult {
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

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
