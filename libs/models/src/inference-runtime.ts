import { join } from 'node:path';
import { Piscina } from 'piscina';
import { CatalogModel, ModelCatalog } from './model-catalog';
import { InferenceTask, InferenceTaskResult, InferenceThreadInit } from './inference-task';

/** The spatial size of one input tensor (an InputGeometry is one). */
export interface TensorSize {
  inputWidth: number;
  inputHeight: number;
}

/** A fixed-input model's size, or a dynamic-input model's nominal size (its preprocessing box). */
export function inputSize(model: CatalogModel): TensorSize {
  const [, , height, width] = model.input.shape;
  return model.dynamicInput ? { inputWidth: model.preprocess.width, inputHeight: model.preprocess.height } : { inputWidth: width, inputHeight: height };
}

export interface InferenceRuntimeOptions {
  /** Worker threads, each with its own copy of every session. */
  threads: number;
  /** ORT intra-op threads per session run. threads × intraOpThreads should not exceed the cores left after decoding. */
  intraOpThreads: number;
  /**
   * Let ORT's intra-op threads spin between runs (ORT's own default). Off (the default here), they sleep
   * between runs: the cores are free for decoding and the queue. ORT_ALLOW_SPINNING.
   */
  allowSpinning?: boolean;
}

/**
 * The one seam to ONNX Runtime: a pool of worker threads that each hold every model's session.
 * The main thread only builds tensors and reads results, so its event loop stays free.
 */
export class InferenceRuntime {
  private constructor(
    private readonly pool: Piscina,
    readonly options: InferenceRuntimeOptions,
  ) {}

  /** Starts the threads, loads every model in each, and runs one warm-up batch per model per thread. */
  static async start(catalog: ModelCatalog, options: InferenceRuntimeOptions): Promise<InferenceRuntime> {
    const init: InferenceThreadInit = {
      models: catalog.list().map((model) => ({ name: model.name, path: model.path, dynamicInput: model.dynamicInput })),
      intraOpThreads: options.intraOpThreads,
      allowSpinning: options.allowSpinning ?? false,
    };
    const pool = new Piscina({
      filename: join(__dirname, 'inference.thread.js'),
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Infinity,
      // One task per thread at a time: a second concurrent run would only fight the first for the same cores.
      concurrentTasksPerWorker: 1,
      workerData: init,
    });
    const runtime = new InferenceRuntime(pool, options);
    const warmups: Promise<unknown>[] = [];
    for (let thread = 0; thread < options.threads; thread++) {
      for (const model of catalog.list()) {
        // A dynamic-input model warms up at its nominal size (the preprocessing box).
        const size = inputSize(model);
        const values = 3 * size.inputWidth * size.inputHeight;
        const zeros = model.input.dtype === 'float16' ? new Uint16Array(values) : new Float32Array(values);
        warmups.push(runtime.run(model, zeros, 1, size));
      }
    }
    try {
      await Promise.all(warmups);
    } catch (error) {
      await pool.destroy();
      throw error;
    }
    return runtime;
  }

  /**
   * Runs one batch: `input` holds `batchSize` images of `size` in the model's NCHW layout and dtype. `input` is
   * handed over: when it spans its whole ArrayBuffer, that buffer moves to the inference thread without a copy
   * and `input` is empty (detached) afterwards; a view into a larger buffer is copied first.
   */
  async run(model: CatalogModel, input: Float32Array | Uint16Array, batchSize: number, size: TensorSize = inputSize(model)): Promise<InferenceTaskResult> {
    const channels = model.input.shape[1];
    const [height, width] = [size.inputHeight, size.inputWidth];
    const whole = input.byteOffset === 0 && input.byteLength === input.buffer.byteLength && input.buffer instanceof ArrayBuffer;
    const data = (whole ? input : input.slice()).buffer as ArrayBuffer;
    const task: InferenceTask = {
      model: model.name,
      inputName: model.input.name,
      dtype: model.input.dtype,
      dims: [batchSize, channels, height, width],
      data,
      outputs: model.outputs,
    };
    return (await this.pool.run(task, { transferList: [data] })) as InferenceTaskResult;
  }

  get threads(): number {
    return this.options.threads;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
