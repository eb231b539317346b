import type { PreprocessSpec } from './manifest';

/** An axis-aligned box in pixels: top-left corner, width and height. */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A rectangle of whole pixels. */
export interface PixelRect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * Where an image's pixels sit in a model's input tensor, per axis: `input = image × scale + offset`, in
 * continuous pixel coordinates (pixel edges; x = 0 is the left edge of the first column). The one place that
 * maps between image pixels and model pixels, both ways, for every resize kind: stretch (two scales),
 * letterbox (one scale, padding after the image), centre crop (one scale, negative offset) and a crop around a
 * region (one scale, the region's corner at the input's corner).
 */
export interface InputGeometry {
  /** The tensor's size. */
  inputWidth: number;
  inputHeight: number;
  /** Input pixels per image pixel: the resized size over the source size, exactly as resampled. */
  scaleX: number;
  scaleY: number;
  /** Where image (0, 0) lands in the input; negative when the input starts inside the image (crops). */
  offsetX: number;
  offsetY: number;
  /** The part of the image that is resampled (the whole image unless a region was asked for). */
  source: PixelRect;
  /** That part's size after resampling, written into the input at `offset + source corner × scale`. */
  resizedWidth: number;
  resizedHeight: number;
  /**
   * Resample by this side only, the other following at exactly the same scale (its size rounded), as
   * torchvision's Resize(shorter side) does; otherwise both sizes are given and each axis has its own scale.
   */
  uniformBy?: 'width' | 'height';
}

export function toImagePoint(geometry: InputGeometry, [x, y]: [number, number]): [number, number] {
  return [(x - geometry.offsetX) / geometry.scaleX, (y - geometry.offsetY) / geometry.scaleY];
}

export function toInputPoint(geometry: InputGeometry, [x, y]: [number, number]): [number, number] {
  return [x * geometry.scaleX + geometry.offsetX, y * geometry.scaleY + geometry.offsetY];
}

export function toImageBox(geometry: InputGeometry, box: Box): Box {
  const [x, y] = toImagePoint(geometry, [box.x, box.y]);
  return { x, y, width: box.width / geometry.scaleX, height: box.height / geometry.scaleY };
}

const ceilTo = (value: number, multiple: number) => Math.ceil(value / multiple) * multiple;
const atLeastOne = (value: number) => Math.max(1, Math.round(value));

/**
 * The geometry a manifest's preprocessing gives a width×height image (display orientation).
 * - stretch: resize to the input size, aspect ratio lost (two scales).
 * - letterbox: fit inside width×height keeping the aspect ratio (a smaller image is enlarged to fit unless
 *   `enlarge` is false; with `maxShrink`, a larger one is shrunk only as much as needed to fit, by that factor
 *   or to `minLongSide`, whichever is larger), image at the top-left, padding right and bottom; with
 *   `padToMultipleOf` (models with a dynamic input) the input is only as large as the resized image rounded up
 *   to that multiple, so a panorama is not padded to a square.
 * - center-crop: resize the shorter side to `shorterSide` (uniform), take the centred width×height.
 */
export function planInput(width: number, height: number, spec: PreprocessSpec): InputGeometry {
  const source = { left: 0, top: 0, width, height };
  switch (spec.resize) {
    case 'face-align':
      throw new Error('face-align input is made from detected landmarks (alignFaceTensor), not from a whole image');
    case 'stretch':
      return { inputWidth: spec.width, inputHeight: spec.height, scaleX: spec.width / width, scaleY: spec.height / height, offsetX: 0, offsetY: 0, source, resizedWidth: spec.width, resizedHeight: spec.height };
    case 'letterbox': {
      const fit = Math.min(spec.width / width, spec.height / height);
      // Smaller than the box when a milder shrink (maxShrink, minLongSide) is enough.
      const wanted = spec.maxShrink ? Math.min(fit, Math.max(1 / spec.maxShrink, (spec.minLongSide ?? 0) / Math.max(width, height))) : fit;
      const scale = spec.enlarge ? wanted : Math.min(1, wanted);
      const resizedWidth = Math.min(spec.width, atLeastOne(width * scale));
      const resizedHeight = Math.min(spec.height, atLeastOne(height * scale));
      const multiple = spec.padToMultipleOf;
      return {
        inputWidth: multiple ? ceilTo(resizedWidth, multiple) : spec.width,
        inputHeight: multiple ? ceilTo(resizedHeight, multiple) : spec.height,
        scaleX: resizedWidth / width,
        scaleY: resizedHeight / height,
        offsetX: 0,
        offsetY: 0,
        source,
        resizedWidth,
        resizedHeight,
      };
    }
    case 'center-crop': {
      const shorter = Math.max(spec.shorterSide ?? Math.max(spec.width, spec.height), spec.width, spec.height);
      const scale = shorter / Math.min(width, height);
      const resizedWidth = Math.max(spec.width, Math.round(width * scale));
      const resizedHeight = Math.max(spec.height, Math.round(height * scale));
      return {
        inputWidth: spec.width,
        inputHeight: spec.height,
        scaleX: scale,
        scaleY: scale,
        uniformBy: width <= height ? 'width' : 'height',
        offsetX: -Math.floor((resizedWidth - spec.width) / 2),
        offsetY: -Math.floor((resizedHeight - spec.height) / 2),
        source,
        resizedWidth,
        resizedHeight,
      };
    }
  }
}

/**
 * The geometry of a square region of the image (it may reach past the image's edges) resampled to a
 * size×size input, e.g. a second detector pass on a crop around a face. The part of the region inside the
 * image is resampled; the rest of the input is padding.
 */
export function planRegion(imageWidth: number, imageHeight: number, region: Box, size: number): InputGeometry {
  const scale = size / Math.max(region.width, region.height);
  const left = Math.max(0, Math.floor(region.x));
  const top = Math.max(0, Math.floor(region.y));
  const right = Math.min(imageWidth, Math.ceil(region.x + region.width));
  const bottom = Math.min(imageHeight, Math.ceil(region.y + region.height));
  const source = { left, top, width: Math.max(1, right - left), height: Math.max(1, bottom - top) };
  const resizedWidth = atLeastOne(source.width * scale);
  const resizedHeight = atLeastOne(source.height * scale);
  const scaleX = resizedWidth / source.width;
  const scaleY = resizedHeight / source.height;
  // The region's corner sits at the input's corner; the clipped source starts where it falls inside it.
  const offsetX = Math.round((left - region.x) * scale) - left * scaleX;
  const offsetY = Math.round((top - region.y) * scale) - top * scaleY;
  return { inputWidth: size, inputHeight: size, scaleX, scaleY, offsetX, offsetY, source, resizedWidth, resizedHeight };
}

/** Where the resampled source's top-left pixel is written in the input (whole pixels; negative = cropped). */
export function placement(geometry: InputGeometry): [number, number] {
  return [Math.round(geometry.source.left * geometry.scaleX + geometry.offsetX), Math.round(geometry.source.top * geometry.scaleY + geometry.offsetY)];
}
