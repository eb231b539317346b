import { AppError, ErrorCode } from '@app/contracts';
import { redisTryLater, tryLaterMessage } from '@app/redis';

/** What a client is told when a failure is worth retrying: the code and message of the 503 it stands for, and the wait. */
export interface RetryHint {
  code: ErrorCode;
  message: string;
  /** Seconds to wait before trying again (the Retry-After header of a 503, the `retry:` field of an event stream). */
  retryAfterSeconds: number;
}

/**
 * The retry hint of `error`, or undefined when it is not a "try later" failure: an AppError that carries
 * `retryAfterSeconds` (QUEUE_FULL, a busy upload budget, a job lost twice…) as it is, and a Redis reply or lost
 * connection that means "not now" (redisTryLater) as SERVICE_UNAVAILABLE. The same policy as every 503 the API
 * answers (ApiExceptionFilter), for answers that are no longer a status code (an event stream already open).
 */
export function retryHintOf(error: unknown): RetryHint | undefined {
  if (error instanceof AppError) {
    const seconds = error.details?.retryAfterSeconds;
    return typeof seconds === 'number' ? { code: error.code, message: error.message, retryAfterSeconds: seconds } : undefined;
  }
  const tryLater = redisTryLater(error);
  return tryLater ? { code: ErrorCode.ServiceUnavailable, message: tryLaterMessage(tryLater), retryAfterSeconds: tryLater.retryAfterSeconds } : undefined;
}
