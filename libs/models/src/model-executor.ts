import { Arrival, BatchedResult, InferenceBatcher } from './inference-batcher';
import { InferenceRuntime } from './inference-runtime';
import { CatalogModel, ModelCatalog } from './model-catalog';
import { float16ToFloat32Array, float32ToFloat16Array } from './float16';

/** One image's model outputs, by output name, as float32. */
export type ModelOutputs = Record<string, Float32Array>;

/**
 * Runs single-image tensors through a model with dynamic batching: one InferenceBatcher per model,
 * each allowed one running batch per inference thread.
 */
export class ModelExecutor {
  private readonly batchers = new Map<string, InferenceBatcher<Float32Array, ModelOutputs>>();

  constructor(
    catalog: ModelCatalog,
    private readonly runtime: InferenceRuntime,
    /** Told about every batch run (for metrics). */
    private readonly onBatch: (model: string, size: number, seconds: number) => void = () => undefined,
  ) {
    for (const model of catalog.list()) {
      this.batchers.set(
        model.name,
        new InferenceBatcher<Float32Array, ModelOutputs>(
          { maxBatchSize: model.maxBatchSize, maxBatchDelayMs: model.maxBatchDelayMs, maxInFlight: runtime.threads },
          (inputs) => this.runBatch(model, inputs),
        ),
      );
    }
  }

  /** `tensor` is one image in the model's CHW layout, float32 (converted here when the model wants float16). */
  run(modelName: string, tensor: Float32Array): Promise<BatchedResult<ModelOutputs>> {
    return this.batcher(modelName).submit(tensor);
  }

  /**
   * Announces an image for this model that is still being read and decoded, so a batch forming meanwhile
   * waits for it (up to the model's maxBatchDelayMs); submit it through the arrival, or cancel if it fails first.
   */
  expect(modelName: string): Arrival<Float32Array, ModelOutputs> {
    return this.batcher(modelName).expect();
  }

  private batcher(modelName: string): InferenceBatcher<Float32Array, ModelOutputs> {
    const batcher = this.batchers.get(modelName);
    if (!batcher) throw new Error(`model ${modelName} is not loaded`);
    return batcher;
  }

  /** Items waiting for a batch, over all models. */
  get waiting(): number {
    let total = 0;
    for (const batcher of this.batchers.values()) total += batcher.waiting + batcher.running;
    return total;
  }

  private async runBatch(model: CatalogModel, inputs: Float32Array[]): Promise<ModelOutputs[]> {
    const [, channels, height, width] = model.input.shape;
    const imageSize = channels * height * width;
    const batch = new Float32Array(imageSize * inputs.length);
    inputs.forEach((input, i) => {
      if (input.length !== imageSize) throw new Error(`input tensor has ${input.length} values, ${model.name} needs ${imageSize}`);
      batch.set(input, i * imageSize);
    });
    const data = model.input.dtype === 'float16' ? float32ToFloat16Array(batch) : batch;
    const result = await this.runtime.run(model, data, inputs.length);
    this.onBatch(model.name, inputs.length, result.runMs / 1000);
    const perImage: ModelOutputs[] = inputs.map(() => ({}));
    for (const [name, tensor] of Object.entries(result.outputs)) {
      const values = tensor.data instanceof Uint16Array ? float16ToFloat32Array(tensor.data) : tensor.data;
      const size = values.length / inputs.length;
      perImage.forEach((outputs, i) => (outputs[name] = values.slice(i * size, (i + 1) * size)));
    }
    return perImage;
  }
}
