/**
 * Runs inside a worker thread (piscina). onnxruntime-node's `session.run()` holds the calling thread for
 * the whole run, so it must never run on the worker's main event loop, where BullMQ renews job locks.
 * Each thread loads every model's session once, when the thread starts.
 */
import * as ort from 'onnxruntime-node';
import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import type { InferenceTask, InferenceTaskResult, InferenceThreadInit, TensorData } from './inference-task';

// onnxruntime-node 1.30's binding reads the byte length of a Float16Array as 0, so on Node 23+ (which has
// Float16Array, and onnxruntime-common then wraps every float16 input in one) each float16 model fails with
// "not enough space: expected N, got 0" (microsoft/onnxruntime#32323, unreleased). onnxruntime-common looks
// for Float16Array once, at the first Tensor: hidden in this thread (which runs nothing else), float16 data
// stays the Uint16Array the binding reads, as on Node 20. Remove once a fixed onnxruntime-node is out.
delete (globalThis as { Float16Array?: unknown }).Float16Array;

/** What the handler returns: the result, wrapped so piscina transfers the listed buffers with it. */
type MovedResult = ReturnType<typeof move>;

async function createHandler(): Promise<(task: InferenceTask) => Promise<InferenceTaskResult | MovedResult>> {
  const init = workerData as InferenceThreadInit;
  const sessions = new Map<string, ort.InferenceSession>();
  for (const model of init.models) {
    const session = await ort.InferenceSession.create(model.path, {
      intraOpNumThreads: init.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Some exported graphs list initializers as inputs; ORT warns once per initializer. Keep errors only.
      logSeverityLevel: 3,
      // ORT's CPU arena keeps what a session's largest run needed, for the life of the process. A dynamic-input model
      // (the face detector: up to 1024 px on the long side, crops at 160 px) grew it with every new size: after forty
      // 12-megapixel face jobs the worker held 546–668 MB 15 s later, against 488–525 without the arena for it (peak
      // 850–861 → 719–767 MB, start 254 → 222 MB), and the same CPU for the jobs (medians 16.5 and 16.1 s, three
      // interleaved runs each). Fixed-size models keep the arena: their runs are all the same size.
      enableCpuMemArena: !model.dynamicInput,
      // Flattened by onnxruntime-node into the session config entry "session.intra_op.allow_spinning".
      extra: { session: { intra_op: { allow_spinning: init.allowSpinning ? '1' : '0' } } },
    });
    sessions.set(model.name, session);
  }

  return async (task: InferenceTask): Promise<InferenceTaskResult | MovedResult> => {
    const session = sessions.get(task.model);
    if (!session) throw new Error(`model ${task.model} is not loaded in this inference thread`);
    const data = task.dtype === 'float16' ? new Uint16Array(task.data) : new Float32Array(task.data);
    const feeds = { [task.inputName]: new ort.Tensor(task.dtype, data, task.dims) };
    const started = performance.now();
    const results = await session.run(feeds, task.outputs);
    const runMs = performance.now() - started;
    const outputs: Record<string, TensorData> = {};
    // Output buffers that belong to their tensor alone move to the main thread instead of being copied.
    const transfer = new Set<ArrayBuffer>();
    for (const name of task.outputs) {
      const tensor = results[name];
      const data = tensor.data as Float32Array | Uint16Array;
      outputs[name] = { dims: [...tensor.dims], dtype: tensor.type, data };
      if (data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) transfer.add(data.buffer);
    }
    const result: InferenceTaskResult = { outputs, runMs };
    return move({ [transferableSymbol]: [...transfer], [valueSymbol]: result });
  };
}

export default createHandler();
