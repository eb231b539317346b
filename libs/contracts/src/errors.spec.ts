import { AppError, decodeJobError, encodeJobError, ErrorCode, isImageFault, isStalledTooOften } from './errors';

describe('decodeJobError', () => {
  it('gives back the code and message a worker encoded', () => {
    expect(decodeJobError(encodeJobError(new AppError(ErrorCode.ImageDecodeFailed, 'not a JPEG')))).toEqual({ code: ErrorCode.ImageDecodeFailed, message: 'not a JPEG' });
  });

  it("reads BullMQ's stalled-job failure as an overloaded service (503 with Retry-After), not a failed inference", () => {
    const error = decodeJobError('job stalled more than allowable limit');
    expect(error.code).toBe(ErrorCode.ServiceUnavailable);
    expect(new AppError(error.code, error.message, error.details).httpStatus).toBe(503);
    expect(error.details).toEqual({ retryAfterSeconds: expect.any(Number) });
    expect(error.message).toMatch(/try again/);
  });

  it('reads any other plain reason (a crash) as INFERENCE_FAILED with the reason as message', () => {
    expect(decodeJobError('Cannot read properties of undefined')).toEqual({ code: ErrorCode.InferenceFailed, message: 'Cannot read properties of undefined' });
    expect(decodeJobError(undefined)).toEqual({ code: ErrorCode.InferenceFailed, message: 'the job failed without a reason' });
  });
});

describe('IMAGE_CRASHED_WORKER', () => {
  it('is an image fault answered 422: remembered and never retried, like an undecodable image', () => {
    expect(isImageFault(ErrorCode.ImageCrashedWorker)).toBe(true);
    expect(new AppError(ErrorCode.ImageCrashedWorker, 'x').httpStatus).toBe(422);
  });

  it("is counted from BullMQ's stalled-limit reason only", () => {
    expect(isStalledTooOften('job stalled more than allowable limit')).toBe(true);
    expect(isStalledTooOften('could not renew lock for job 1')).toBe(false);
    expect(isStalledTooOften(undefined)).toBe(false);
  });
});
