import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { InputGeometry, PixelRect, placement, planInput, PreprocessSpec, uninitializedFloat32Array } from '@app/models';
import { DecodedImage, DecodeLimits, rawRgb, readImage } from './image-decoder';

export interface ModelInput {
  /** One image, CHW float32, ready for the model. */
  tensor: Float32Array;
  /** How the image's pixels sit in the tensor: detections are mapped back through it. */
  geometry: InputGeometry;
  /** Display size of the original (after EXIF orientation). */
  originalWidth: number;
  originalHeight: number;
  decodeMs: number;
}

/**
 * Decodes an image under the decode policy (readImage: the whole file, whatever the model), orients it,
 * resamples it as the model's manifest says (planInput) and writes the tensor. sharp runs libvips in
 * libuv's pool, off the event loop.
 */
export async function prepareModelInput(bytes: Buffer, spec: PreprocessSpec, limits: DecodeLimits): Promise<ModelInput> {
  const started = performance.now();
  return readImage(bytes, limits, async (image, header) => {
    const geometry = planInput(header.width, header.height, spec);
    const tensor = writeTensor(await resample(image, header, geometry), geometry, spec);
    return { tensor, geometry, originalWidth: header.width, originalHeight: header.height, decodeMs: performance.now() - started };
  });
}

/**
 * A model input made from pixels already decoded: the whole image (planInput) or a region of it (planRegion),
 * e.g. a face detector's input and its second pass on a crop around each face, both from the same decode.
 */
export async function modelInputFromPixels(pixels: DecodedImage, geometry: InputGeometry, spec: PreprocessSpec): Promise<Float32Array> {
  // A region is copied out first (a few hundred kB), so libvips resamples it without walking the whole image.
  const source = isWhole(pixels, geometry.source) ? pixels : cutOut(pixels, geometry.source);
  const image = sharp(source.data, { raw: { width: source.width, height: source.height, channels: 3 } });
  const cut = source === pixels ? geometry : { ...geometry, source: { left: 0, top: 0, width: source.width, height: source.height } };
  // Placed where the geometry puts its source rectangle, wherever it was resampled from.
  return writeTensor(await resample(image, source, cut), geometry, spec);
}

function isWhole(size: { width: number; height: number }, rect: PixelRect): boolean {
  return rect.left === 0 && rect.top === 0 && rect.width === size.width && rect.height === size.height;
}

/** The rectangle's pixels as an image of their own (rows copied). */
function cutOut(pixels: DecodedImage, rect: PixelRect): DecodedImage {
  const row = rect.width * 3;
  const data = Buffer.allocUnsafe(row * rect.height);
  for (let y = 0; y < rect.height; y++) {
    const start = ((rect.top + y) * pixels.width + rect.left) * 3;
    pixels.data.copy(data, y * row, start, start + row);
  }
  return { data, width: rect.width, height: rect.height };
}

/** The geometry's source rectangle of a width×height image, resampled to its resized size. */
async function resample(image: Sharp, size: { width: number; height: number }, geometry: InputGeometry): Promise<DecodedImage> {
  const { source, resizedWidth, resizedHeight } = geometry;
  // Called before resize, extract cuts the (oriented) image first, so only the rectangle is resampled.
  if (!isWhole(size, source)) image.extract(source);
  const { uniformBy } = geometry;
  const resized = await rawRgb(uniformBy ? image.resize(uniformBy === 'width' ? { width: resizedWidth } : { height: resizedHeight }) : image.resize(resizedWidth, resizedHeight, { fit: 'fill' }));
  // By one side, sharp rounds the other itself: a pixel either way only moves a centre crop by half a pixel.
  const slack = uniformBy ? 1 : 0;
  if (Math.abs(resized.width - resizedWidth) > slack || Math.abs(resized.height - resizedHeight) > slack) {
    throw new Error(`resampling produced ${resized.width}×${resized.height}, expected ${resizedWidth}×${resizedHeight}`);
  }
  return resized;
}

/**
 * Writes the resampled pixels into a CHW float32 tensor of the geometry's input size at their placement
 * (padding around them, or a crop when they are larger), in the model's channel order:
 * (pixel·scale − mean[c]) / std[c]; padding is `padValue` through the same formula.
 */
export function writeTensor(resized: DecodedImage, geometry: InputGeometry, spec: PreprocessSpec): Float32Array {
  const { inputWidth, inputHeight } = geometry;
  const plane = inputWidth * inputHeight;
  // Every value is written below (the pixels, and the padding where they do not cover the plane).
  const tensor = uninitializedFloat32Array(plane * 3);
  const [left, top] = placement(geometry);
  const x0 = Math.max(0, left);
  const y0 = Math.max(0, top);
  const x1 = Math.min(inputWidth, left + resized.width);
  const y1 = Math.min(inputHeight, top + resized.height);
  // A pixel byte has 256 values: each channel's (value·scale − mean) / std is looked up, not computed per pixel.
  const table = new Float32Array(256);
  const pixels = resized.data;
  for (let c = 0; c < 3; c++) {
    const source = spec.channels === 'RGB' ? c : 2 - c;
    const mean = spec.mean[c];
    const std = spec.std[c];
    for (let value = 0; value < 256; value++) table[value] = (value * spec.scale - mean) / std;
    const offset = c * plane;
    // Padding only where the pixels do not cover the whole plane.
    if (x0 > 0 || y0 > 0 || x1 < inputWidth || y1 < inputHeight) {
      tensor.fill((spec.padValue * spec.scale - mean) / std, offset, offset + plane);
    }
    for (let y = y0; y < y1; y++) {
      let from = ((y - top) * resized.width + x0 - left) * 3 + source;
      const out = offset + y * inputWidth;
      for (let x = out + x0, end = out + x1; x < end; x++, from += 3) tensor[x] = table[pixels[from]];
    }
  }
  return tensor;
}
