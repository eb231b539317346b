/** Error codes shared by API and worker. Every error answer is `{ error: { code, message } }`. */
export enum ErrorCode {
  ImageMissing = 'IMAGE_MISSING',
  ImageEmpty = 'IMAGE_EMPTY',
  ImageTooLarge = 'IMAGE_TOO_LARGE',
  /** A multipart body with more files, form fields or parts than allowed (413, as a body too large). */
  PayloadTooLarge = 'PAYLOAD_TOO_LARGE',
  ImageUnsupportedFormat = 'IMAGE_UNSUPPORTED_FORMAT',
  ImageTooManyPixels = 'IMAGE_TOO_MANY_PIXELS',
  ImageTooManyFrames = 'IMAGE_TOO_MANY_FRAMES',
  ImageBadShape = 'IMAGE_BAD_SHAPE',
  ImageDecodeFailed = 'IMAGE_DECODE_FAILED',
  /**
   * The image killed the worker process that held it (a native crash in a decoder or ONNX Runtime) as often as
   * POISON_STALL_LIMIT allows: it is no longer given to workers for that model (libs/storage PoisonImages).
   */
  ImageCrashedWorker = 'IMAGE_CRASHED_WORKER',
  InvalidBase64 = 'INVALID_BASE64',
  UnsupportedMediaType = 'UNSUPPORTED_MEDIA_TYPE',
  UrlNotAllowed = 'URL_NOT_ALLOWED',
  UrlFetchFailed = 'URL_FETCH_FAILED',
  UnknownModel = 'UNKNOWN_MODEL',
  ModelTaskMismatch = 'MODEL_TASK_MISMATCH',
  InvalidParameter = 'INVALID_PARAMETER',
  BadRequest = 'BAD_REQUEST',
  NotFound = 'NOT_FOUND',
  JobNotFound = 'JOB_NOT_FOUND',
  InputExpired = 'INPUT_EXPIRED',
  DeadlineExceeded = 'DEADLINE_EXCEEDED',
  QueueFull = 'QUEUE_FULL',
  Unauthorized = 'UNAUTHORIZED',
  RateLimited = 'RATE_LIMITED',
  ServiceUnavailable = 'SERVICE_UNAVAILABLE',
  InferenceFailed = 'INFERENCE_FAILED',
  Internal = 'INTERNAL_ERROR',
}

/** The HTTP status each code maps to. */
export const ERROR_HTTP_STATUS: Record<ErrorCode, number> = {
  [ErrorCode.ImageMissing]: 400,
  [ErrorCode.ImageEmpty]: 400,
  [ErrorCode.ImageTooLarge]: 413,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.ImageUnsupportedFormat]: 415,
  [ErrorCode.ImageTooManyPixels]: 422,
  [ErrorCode.ImageTooManyFrames]: 422,
  [ErrorCode.ImageBadShape]: 422,
  [ErrorCode.ImageDecodeFailed]: 422,
  [ErrorCode.ImageCrashedWorker]: 422,
  [ErrorCode.InvalidBase64]: 400,
  [ErrorCode.UnsupportedMediaType]: 415,
  [ErrorCode.UrlNotAllowed]: 400,
  [ErrorCode.UrlFetchFailed]: 422,
  [ErrorCode.UnknownModel]: 400,
  [ErrorCode.ModelTaskMismatch]: 400,
  [ErrorCode.InvalidParameter]: 400,
  [ErrorCode.BadRequest]: 400,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.JobNotFound]: 404,
  [ErrorCode.InputExpired]: 410,
  [ErrorCode.DeadlineExceeded]: 504,
  [ErrorCode.QueueFull]: 503,
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.ServiceUnavailable]: 503,
  [ErrorCode.InferenceFailed]: 500,
  [ErrorCode.Internal]: 500,
};

/**
 * Failures that are properties of the image itself (its bytes cannot be decoded, it has too many pixels or frames,
 * its format is not one we read): sending the same bytes again gives the same answer, so they are remembered
 * (analysis failure records, kept failed face jobs). Every other failure (an image store the worker cannot
 * read, Redis trouble, a crashed thread) says nothing about the image and is computed again next time.
 */
const IMAGE_FAULTS: ReadonlySet<string> = new Set([
  ErrorCode.ImageEmpty,
  ErrorCode.ImageTooLarge,
  ErrorCode.ImageUnsupportedFormat,
  ErrorCode.ImageTooManyPixels,
  ErrorCode.ImageTooManyFrames,
  ErrorCode.ImageBadShape,
  ErrorCode.ImageDecodeFailed,
  ErrorCode.ImageCrashedWorker,
]);

export function isImageFault(code: string): boolean {
  return IMAGE_FAULTS.has(code);
}

/**
 * A caller's value quoted for an error message, cut to `max` characters (with its full length said), so that an
 * answer never echoes a request's kilobytes back (red team: a 7 KB `?model=` came back whole in UNKNOWN_MODEL).
 */
export function echoed(value: string, max = 64): string {
  return value.length <= max ? `"${value}"` : `"${value.slice(0, max)}…" (${value.length} characters)`;
}

/** An error that carries a stable code; thrown by services in both apps. */
export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'AppError';
  }

  get httpStatus(): number {
    return ERROR_HTTP_STATUS[this.code] ?? 500;
  }
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

/**
 * A BullMQ job's failedReason is a plain string. Workers encode their errors as JSON in it so the API
 * can answer with the same code; anything else (a crash, a stalled-job message) reads as INFERENCE_FAILED.
 */
export function encodeJobError(error: unknown): string {
  if (error instanceof AppError) return JSON.stringify({ code: error.code, message: error.message });
  const message = error instanceof Error ? error.message : String(error);
  return JSON.stringify({ code: ErrorCode.InferenceFailed, message });
}

export function decodeJobError(failedReason: string | undefined): ErrorBody {
  if (failedReason) {
    try {
      const parsed = JSON.parse(failedReason) as Partial<ErrorBody>;
      if (parsed && typeof parsed.code === 'string' && parsed.code in ERROR_HTTP_STATUS_BY_VALUE && typeof parsed.message === 'string') {
        return { code: parsed.code as ErrorCode, message: parsed.message };
      }
    } catch {
      // not JSON: a BullMQ-generated reason such as "job stalled more than allowable limit"
    }
  }
  if (isStalledTooOften(failedReason)) return { code: ErrorCode.ServiceUnavailable, message: STALLED_MESSAGE, details: { retryAfterSeconds: STALLED_RETRY_AFTER_SECONDS } };
  return { code: ErrorCode.InferenceFailed, message: failedReason || 'the job failed without a reason' };
}

/**
 * BullMQ's failedReason for a job whose lock lapsed more often than the worker's maxStalledCount (1) allows: its
 * worker died holding it, or was too starved of CPU (or of Redis) to renew the lock within LOCK_DURATION_MS, twice.
 * Nothing is known to be wrong with the input and nothing stored is lost, so it answers like an overloaded service
 * (503 with Retry-After), not like a failed inference (500): the client's retry is the remedy. Unless the image itself
 * kills its workers: the worker counts these failures per image and model, and past POISON_STALL_LIMIT answers
 * IMAGE_CRASHED_WORKER instead (libs/storage PoisonImages).
 */
const STALLED_TOO_OFTEN = /^job stalled more than allowable limit$/;

/**
 * Whether a job's failedReason (or the error BullMQ fails it with) is the stalled-limit one above: the job's lock
 * lapsed twice. The worker counts these per image (PoisonImages): an image that kills every worker holding it
 * produces one such failure per two dead workers.
 */
export function isStalledTooOften(failedReason: string | undefined): boolean {
  return failedReason !== undefined && STALLED_TOO_OFTEN.test(failedReason);
}
const STALLED_MESSAGE = 'the job was interrupted twice (its worker stopped, or was too busy to keep the job); nothing was stored: try again';
const STALLED_RETRY_AFTER_SECONDS = 5;

const ERROR_HTTP_STATUS_BY_VALUE: Record<string, number> = Object.fromEntries(Object.entries(ERROR_HTTP_STATUS));
