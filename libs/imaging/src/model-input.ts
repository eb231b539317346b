import sharp from 'sharp';
import { AppError, ErrorCode } from '@app/contracts';
import type { PreprocessSpec } from '@app/models';
import { detectImageFormat } from './image-format';

export interface ModelInput {
  /** One image, CHW float32, ready for the model. */
  tensor: Float32Array;
  /** Display size of the original (after EXIF orientation): detections are mapped back to it. */
  originalWidth: number;
  originalHeight: number;
  /** original = model-input coordinate / scale (per axis); letterbox pads right/bottom so no offset. */
  scaleX: number;
  scaleY: number;
  decodeMs: number;
}

/**
 * Decodes an image with sharp (libvips, off the event loop in libuv's pool), orients it by EXIF,
 * drops alpha, makes it 3-channel sRGB, resizes as the model's manifest says and writes the tensor.
 */
export async function prepareModelInput(bytes: Buffer, spec: PreprocessSpec, maxPixels: number): Promise<ModelInput> {
  const started = performance.now();
  if (!detectImageFormat(bytes)) throw new AppError(ErrorCode.ImageUnsupportedFormat, 'the data is not a supported raster image');
  try {
    // failOn 'error': truncated or corrupt data fails instead of decoding to grey; limitInputPixels stops bombs before decoding.
    const image = sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error', sequentialRead: true }).rotate();
    const metadata = await image.metadata();
    const originalWidth = metadata.autoOrient?.width ?? metadata.width;
    const originalHeight = metadata.autoOrient?.height ?? metadata.height;
    if (!originalWidth || !originalHeight) throw new Error('no dimensions');
    const geometry = planResize(originalWidth, originalHeight, spec);
    image.resize(geometry.resize);
    if (geometry.crop) image.extract(geometry.crop);
    if (geometry.pad) image.extend({ ...geometry.pad, background: { r: spec.padValue, g: spec.padValue, b: spec.padValue } });
    const { data, info } = await image.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.width !== spec.width || info.height !== spec.height || info.channels !== 3) {
      throw new Error(`preprocessing produced ${info.width}×${info.height}×${info.channels}, expected ${spec.width}×${spec.height}×3`);
    }
    return {
      tensor: toChwTensor(data, spec),
      originalWidth,
      originalHeight,
      scaleX: geometry.scaleX,
      scaleY: geometry.scaleY,
      decodeMs: performance.now() - started,
    };
  } catch (error) {
    if (error instanceof AppError) throw error;
    const message = (error as Error).message;
    if (/pixel limit/i.test(message)) throw new AppError(ErrorCode.ImageTooManyPixels, `the image exceeds the ${maxPixels}-pixel limit`);
    throw new AppError(ErrorCode.ImageDecodeFailed, `the image cannot be decoded: ${message}`);
  }
}

interface ResizePlan {
  /** Only one side for center-crop: sharp then scales both axes by exactly the same factor, as the reference did. */
  resize: { width?: number; height?: number; fit?: 'fill' };
  crop?: { left: number; top: number; width: number; height: number };
  pad?: { top: number; left: number; right: number; bottom: number };
  scaleX: number;
  scaleY: number;
}

export function planResize(width: number, height: number, spec: PreprocessSpec): ResizePlan {
  switch (spec.resize) {
    case 'face-align':
      throw new Error('face-align input is made from detected landmarks (alignFaceTensor), not from a whole image');
    case 'stretch':
      return { resize: { width: spec.width, height: spec.height, fit: 'fill' }, scaleX: spec.width / width, scaleY: spec.height / height };
    case 'center-crop': {
      const shorter = Math.max(spec.shorterSide ?? Math.max(spec.width, spec.height), spec.width, spec.height);
      const scale = shorter / Math.min(width, height);
      // sharp rounds the other side itself; a floor'd centre offset stays inside it either way.
      const resizedWidth = Math.max(spec.width, Math.round(width * scale));
      const resizedHeight = Math.max(spec.height, Math.round(height * scale));
      const left = Math.max(0, Math.floor((resizedWidth - spec.width) / 2));
      const top = Math.max(0, Math.floor((resizedHeight - spec.height) / 2));
      const resize = width <= height ? { width: shorter } : { height: shorter };
      return { resize, crop: { left, top, width: spec.width, height: spec.height }, scaleX: scale, scaleY: scale };
    }
    case 'letterbox': {
      const scale = Math.min(spec.width / width, spec.height / height);
      const resizeWidth = Math.min(spec.width, Math.max(1, Math.round(width * scale)));
      const resizeHeight = Math.min(spec.height, Math.max(1, Math.round(height * scale)));
      return {
        resize: { width: resizeWidth, height: resizeHeight, fit: 'fill' },
        pad: { top: 0, left: 0, right: spec.width - resizeWidth, bottom: spec.height - resizeHeight },
        scaleX: scale,
        scaleY: scale,
      };
    }
  }
}

/** HWC uint8 RGB → CHW float32 in the model's channel order: (pixel·scale − mean[c]) / std[c]. */
export function toChwTensor(rgb: Buffer, spec: PreprocessSpec): Float32Array {
  const plane = spec.width * spec.height;
  const tensor = new Float32Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const source = spec.channels === 'RGB' ? c : 2 - c;
    const mean = spec.mean[c];
    const std = spec.std[c];
    const offset = c * plane;
    for (let i = 0; i < plane; i++) tensor[offset + i] = (rgb[i * 3 + source] * spec.scale - mean) / std;
  }
  return tensor;
}
