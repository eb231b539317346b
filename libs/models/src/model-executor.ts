import { Arrival, BatchedResult, InferenceBatcher } from './inference-batcher';
import { InferenceRuntime, inputSize, TensorSize } from './inference-runtime';
import { CatalogModel, ModelCatalog } from './model-catalog';
import { float16ToFloat32Array, float32ToFloat16Array } from './float16';
import { uninitializedFloat32Array } from './tensor-memory';

/** One image's model outputs, by output name, as float32. */
export type ModelOutputs = Record<string, Float32Array>;

/** One image's tensor (CHW float32) and its spatial size. */
interface SizedTensor {
  tensor: Float32Array;
  size: TensorSize;
}

/** An image announced to a model's batcher before its tensor exists (see InferenceBatcher.expect). */
export interface TensorArrival {
  submit(tensor: Float32Array, size?: TensorSize): Promise<BatchedResult<ModelOutputs>>;
  cancel(): void;
}

/**
 * Runs single-image tensors through a model with dynamic batching: one InferenceBatcher per model,
 * each allowed one running batch per inference thread.
 */
export class ModelExecutor {
  private readonly batchers = new Map<string, InferenceBatcher<SizedTensor, ModelOutputs>>();

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly runtime: InferenceRuntime,
    /** Told about every batch run (for metrics). */
    private readonly onBatch: (model: string, size: number, seconds: number) => void = () => undefined,
  ) {
    for (const model of catalog.list()) {
      this.batchers.set(
        model.name,
        new InferenceBatcher<SizedTensor, ModelOutputs>(
          { maxBatchSize: model.maxBatchSize, maxBatchDelayMs: model.maxBatchDelayMs, maxInFlight: runtime.threads },
          (inputs) => this.runBatch(model, inputs),
        ),
      );
    }
  }

  /**
   * `tensor` is one image in the model's CHW layout, float32 (converted here when the model wants float16);
   * `size` is its spatial size, required for a dynamic-input model (an InputGeometry will do).
   */
  run(modelName: string, tensor: Float32Array, size?: TensorSize): Promise<BatchedResult<ModelOutputs>> {
    return this.batcher(modelName).submit({ tensor, size: this.sizeFor(modelName, size) });
  }

  /**
   * Announces an image for this model that is still being read and decoded, so a batch forming meanwhile
   * waits for it (up to the model's maxBatchDelayMs); submit it through the arrival, or cancel if it fails first.
   */
  expect(modelName: string): TensorArrival {
    const arrival: Arrival<SizedTensor, ModelOutputs> = this.batcher(modelName).expect();
    return { submit: (tensor, size) => arrival.submit({ tensor, size: this.sizeFor(modelName, size) }), cancel: () => arrival.cancel() };
  }

  private sizeFor(modelName: string, size: TensorSize | undefined): TensorSize {
    const model = this.catalog.get(modelName);
    if (model.dynamicInput) {
      if (!size) throw new Error(`${modelName} has a dynamic input: every run needs its size`);
      return { inputWidth: size.inputWidth, inputHeight: size.inputHeight };
    }
    return inputSize(model);
  }

  private batcher(modelName: string): InferenceBatcher<SizedTensor, ModelOutputs> {
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

  /** One batch per input size (a dynamic-input model's batch may mix sizes; ONNX Runtime runs one shape at a time). */
  private async runBatch(model: CatalogModel, inputs: SizedTensor[]): Promise<ModelOutputs[]> {
    const outputs: ModelOutputs[] = new Array(inputs.length);
    const bySize = new Map<string, number[]>();
    inputs.forEach(({ size }, i) => {
      const key = `${size.inputWidth}x${size.inputHeight}`;
      bySize.set(key, [...(bySize.get(key) ?? []), i]);
    });
    for (const indices of bySize.values()) {
      const results = await this.runSameSize(model, indices.map((i) => inputs[i]));
      indices.forEach((index, j) => (outputs[index] = results[j]));
    }
    return outputs;
  }

  private async runSameSize(model: CatalogModel, inputs: SizedTensor[]): Promise<ModelOutputs[]> {
    const size = inputs[0].size;
    const imageSize = model.input.shape[1] * size.inputHeight * size.inputWidth;
    // Filled whole by the images' tensors below.
    const batch = uninitializedFloat32Array(imageSize * inputs.length);
    inputs.forEach(({ tensor }, i) => {
      if (tensor.length !== imageSize) throw new Error(`input tensor has ${tensor.length} values, ${model.name} at ${size.inputWidth}×${size.inputHeight} needs ${imageSize}`);
      batch.set(tensor, i * imageSize);
    });
    const data = model.input.dtype === 'float16' ? float32ToFloat16Array(batch) : batch;
    // `batch` is ours: its buffer moves to the inference thread (each caller's tensor stays, for a retry alone).
    const result = await this.runtime.run(model, data, inputs.length, size);
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
