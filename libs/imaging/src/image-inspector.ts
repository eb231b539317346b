import { AppError, ErrorCode } from '@app/contracts';
import { readImageHeader } from './image-format';
import { quickHeader } from './quick-header';
import { assertImageShape } from './image-shape';

export interface ImageInfo {
  format: string;
  /** Display size, after EXIF orientation. */
  width: number;
  height: number;
  bytes: number;
}

export interface ImageLimits {
  maxBytes: number;
  maxPixels: number;
  /** Frames an animated or multi-page image may declare (only the first is decoded). */
  maxFrames: number;
  /** MAX_IMAGE_ASPECT_RATIO: longest side over shortest. */
  maxAspectRatio: number;
  /** HEIC_ENABLED: HEIC is accepted (and decoded by the worker) only when true. */
  heic: boolean;
}

/** An image already written to a file (an upload streamed to disk), inspected without reading it into memory. */
export interface ImageFile {
  path: string;
  bytes: number;
}

/**
 * Cheap checks the API runs before queueing: size, format (a well-formed JPEG or PNG in memory: quickHeader;
 * others: libvips' loader choice, and for HEIF the codec libheif reads from the file's items), and the header's
 * pixel and frame counts. Reads the header only (from memory, or
 * from the file of an upload streamed to disk); the full decode happens in the worker.
 */
export async function inspectImage(input: Buffer | ImageFile, limits: ImageLimits): Promise<ImageInfo> {
  const size = Buffer.isBuffer(input) ? input.length : input.bytes;
  if (size === 0) throw new AppError(ErrorCode.ImageEmpty, 'the image is empty (0 bytes)');
  if (size > limits.maxBytes) {
    throw new AppError(ErrorCode.ImageTooLarge, `the image is ${size} bytes; the limit is ${limits.maxBytes} bytes`);
  }
  const { format, width, height, frames } = Buffer.isBuffer(input) ? (quickHeader(input) ?? (await readImageHeader(input, limits))) : await readImageHeader(input.path, limits);
  assertImageShape(width, height, limits);
  if (frames > limits.maxFrames) {
    throw new AppError(ErrorCode.ImageTooManyFrames, `the image has ${frames} frames; the limit is ${limits.maxFrames} (only the first frame is analysed)`);
  }
  return { format, width, height, bytes: size };
}
