import { AppError, ErrorCode } from '@app/contracts';

/**
 * The header's size against the limits, before anything is decoded: at most `maxPixels` pixels
 * (IMAGE_TOO_MANY_PIXELS) and, when given, sides within `maxAspectRatio`:1 of each other (IMAGE_BAD_SHAPE).
 * The API checks it on upload and the worker again before decoding, with the same words.
 */
export function assertImageShape(width: number, height: number, limits: { maxPixels: number; maxAspectRatio?: number }): void {
  if (width * height > limits.maxPixels) {
    throw new AppError(ErrorCode.ImageTooManyPixels, `the image is ${width}×${height} = ${width * height} pixels; the limit is ${limits.maxPixels}`);
  }
  const ratio = Math.max(width, height) / Math.max(1, Math.min(width, height));
  if (limits.maxAspectRatio && ratio > limits.maxAspectRatio) {
    throw new AppError(
      ErrorCode.ImageBadShape,
      `the image is ${width}×${height}: its sides are ${Math.round(ratio)}:1, beyond the ${limits.maxAspectRatio}:1 a model input can be scaled from (MAX_IMAGE_ASPECT_RATIO)`,
    );
  }
}
