import { TenantId } from './tenant';

/**
 * Job payloads and results on INFERENCE_QUEUE. These are the whole contract between API and worker.
 * Every payload names its tenant: the worker reads and writes that tenant's records only.
 */

/** Where the worker finds the image bytes of a job. */
export type ImageRef =
  /** A short-lived Redis key holding the raw bytes (synchronous requests: nothing is kept afterwards). */
  | { kind: 'blob'; key: string }
  /** The content-addressed image store (STORAGE_DIR), by tenant and sha256. */
  | { kind: 'store'; tenant: TenantId; hash: string };

export interface ClassifyJobData {
  /** The HTTP request id, so one request can be followed from API to worker in the logs. */
  requestId: string;
  /** Who asked: GET /v1/jobs/:id answers only this tenant. */
  tenant: TenantId;
  image: ImageRef;
  /**
   * sha256 (hex) of the image bytes, which the API checked against the image's crash record before queueing; the
   * worker counts a stalled-limit failure of the job against it (PoisonImages). Absent in jobs queued by older APIs.
   */
  imageHash?: string;
  /**
   * The image's own crash count for the model when the API queued the job (absent: none). A worker that runs such a
   * job to its end clears the count, as for a job back after a lapse: an innocent image counted once beside a dying
   * worker's poison job (it held both) is forgiven by its next run, instead of waiting for a second such death.
   */
  crashCount?: number;
  model: string;
  topk: number;
  /** When the API put the job on the queue (epoch ms), for queue-time accounting. */
  enqueuedAt: number;
  /** Epoch ms after which nobody waits for the answer: the worker does not start the job. */
  deadlineAt: number;
}

/** One request's image in a classify-batch job: what ClassifyJobData holds, less the model (the batch's). */
export interface ClassifyBatchItem {
  requestId: string;
  /** Who asked: GET /v1/jobs/<job>.<index> answers only this tenant. A batch mixes tenants, as an ONNX batch does. */
  tenant: TenantId;
  image: ImageRef;
  /** sha256 (hex) of the item's bytes: see ClassifyJobData.imageHash. */
  imageHash?: string;
  topk: number;
  enqueuedAt: number;
  /** Past this (epoch ms) the worker skips the item (DEADLINE_EXCEEDED for it alone). */
  deadlineAt: number;
}

export interface ClassifyBatchJobData {
  model: string;
  items: ClassifyBatchItem[];
}

/** Each item's own outcome, in the order of ClassifyBatchJobData.items: a bad image fails only its item. */
export type ClassifyBatchItemOutcome = { result: ClassifyJobResult } | { /** encodeJobError text, read with decodeJobError */ error: string };

export interface ClassifyBatchJobResult {
  items: ClassifyBatchItemOutcome[];
}

export interface Prediction {
  index: number;
  label: string;
  probability: number;
}

export interface JobTimings {
  /** From enqueue until a worker started the job. */
  queuedMs: number;
  /** Decoding and preprocessing. */
  decodeMs: number;
  /** The model run of the batch this job was part of. */
  inferenceMs: number;
  /** From enqueue to the result. */
  totalMs: number;
}

export interface ClassifyJobResult {
  model: string;
  predictions: Prediction[];
  /** How many images ran in the same model batch as this one. */
  batchSize: number;
  timings: JobTimings;
  /** Which worker process produced the result (host:pid). */
  workerId: string;
}

export type JobState = 'waiting' | 'active' | 'completed' | 'failed' | 'unknown';

export interface AnalyzeJobData {
  requestId: string;
  tenant: TenantId;
  imageHash: string;
  model: string;
  enqueuedAt: number;
}

/** What the result store keeps for one (image, model) pair: a result, or the error that will not change on retry. */
export type AnalysisRecord =
  | { state: 'completed'; model: string; task: string; result: unknown; computedAt: string; workerId: string; inferenceMs: number }
  | { state: 'failed'; model: string; task: string; error: { code: string; message: string }; computedAt: string; workerId: string };

export type AnalysisState = 'waiting' | 'active' | 'completed' | 'failed' | 'unknown';

/** Image metadata kept next to the stored bytes. */
export interface ImageMetadata {
  hash: string;
  bytes: number;
  format: string;
  width: number;
  height: number;
  firstSeen: string;
}

export interface MatchFacesJobData {
  requestId: string;
  tenant: TenantId;
  imageHash: string;
  enqueuedAt: number;
}

export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface FaceMatch {
  imageHash: string;
  faceId: string;
  similarity: number;
}

export interface FaceView {
  faceId: string;
  box: FaceBox;
  landmarks: [number, number][];
  score: number;
  /** The strongest matches, at most FACE_MATCHES_MAX of them. */
  matches: FaceMatch[];
  /** How many faces match in all. */
  matchCount: number;
}

export interface FacesView {
  imageHash: string;
  faces: FaceView[];
  /** Faces found but smaller than FACE_MIN_SIZE: not matched. */
  skippedFaces: { box: FaceBox; score: number; reason: string }[];
  /** Matching images, strongest first, at most FACE_MATCHES_MAX. */
  matchedImages: string[];
  matchedImageCount: number;
  message?: string;
}
