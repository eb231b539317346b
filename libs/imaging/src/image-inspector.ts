import { open } from 'node:fs/promises';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import { AppError, ErrorCode } from '@app/contracts';
import { detectImageFormat } from './image-format';

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
}

/** An image already written to a file (an upload streamed to disk), inspected without reading it into memory. */
export interface ImageFile {
  path: string;
  bytes: number;
}

/** How many leading bytes format detection needs at most. */
const FORMAT_HEAD_BYTES = 4100;

async function headOf(file: ImageFile): Promise<Buffer> {
  const handle = await open(file.path, 'r');
  try {
    const head = Buffer.alloc(Math.min(FORMAT_HEAD_BYTES, file.bytes));
    await handle.read(head, 0, head.length, 0);
    return head;
  } finally {
    await handle.close();
  }
}

/**
 * Cheap checks the API runs before queueing: size, format by magic bytes, and the header's pixel count.
 * Reads the header only (from memory, or from the file of an upload streamed to disk); the full decode happens
 * in the worker.
 */
export async function inspectImage(input: Buffer | ImageFile, limits: ImageLimits): Promise<ImageInfo> {
  const size = Buffer.isBuffer(input) ? input.length : input.bytes;
  if (size === 0) throw new AppError(ErrorCode.ImageEmpty, 'the image is empty (0 bytes)');
  if (size > limits.maxBytes) {
    throw new AppError(ErrorCode.ImageTooLarge, `the image is ${size} bytes; the limit is ${limits.maxBytes} bytes`);
  }
  const bytes = Buffer.isBuffer(input) ? input : await headOf(input);
  const source = Buffer.isBuffer(input) ? input : input.path;
  const format = detectImageFormat(bytes);
  if (!format) {
    throw new AppError(ErrorCode.ImageUnsupportedFormat, 'the data is not a supported raster image (accepted: JPEG, PNG, WebP, GIF, TIFF, AVIF)');
  }
  let metadata: Metadata;
  try {
    metadata = await sharp(source, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new AppError(ErrorCode.ImageDecodeFailed, `the ${format} image header cannot be read: ${(error as Error).message}`);
  }
  const width = metadata.autoOrient?.width ?? metadata.width;
  const height = metadata.autoOrient?.height ?? metadata.height;
  if (!width || !height) throw new AppError(ErrorCode.ImageDecodeFailed, `the ${format} image declares no dimensions`);
  if (width * height > limits.maxPixels) {
    throw new AppError(ErrorCode.ImageTooManyPixels, `the image is ${width}×${height} = ${width * height} pixels; the limit is ${limits.maxPixels}`);
  }
  const frames = metadata.pages ?? 1;
  if (frames > limits.maxFrames) {
    throw new AppError(ErrorCode.ImageTooManyFrames, `the image has ${frames} frames; the limit is ${limits.maxFrames} (only the first frame is analysed)`);
  }
  return { format, width, height, bytes: size };
}
