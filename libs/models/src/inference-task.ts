/** Messages between InferenceRuntime (main thread) and inference.thread (worker thread). */
export interface InferenceThreadInit {
  /**
   * `dynamicInput`: the model takes a different input size per image (the face detector); its session runs without
   * ONNX Runtime's CPU memory arena (see inference.thread.ts).
   */
  models: { name: string; path: string; dynamicInput: boolean }[];
  intraOpThreads: number;
  /** ORT session option session.intra_op.allow_spinning. */
  allowSpinning: boolean;
}

export type TensorDtype = 'float32' | 'float16';

export interface InferenceTask {
  model: string;
  inputName: string;
  dtype: TensorDtype;
  dims: number[];
  /** Transferred, not copied. */
  data: ArrayBuffer;
  outputs: string[];
}

export interface TensorData {
  dims: number[];
  dtype: string;
  data: Float32Array | Uint16Array;
}

export interface InferenceTaskResult {
  outputs: Record<string, TensorData>;
  /** Wall time of session.run() inside the thread. */
  runMs: number;
}
