import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { AppError, ErrorCode } from '@app/contracts';
import { heicDecoder } from './heic/heic-decoder';
import { ImageHeader, readImageHeader } from './image-format';

/** Decoded pixels: HWC uint8 RGB (sRGB), rows packed, display orientation. */
export interface DecodedImage {
  data: Buffer;
  width: number;
  height: number;
}

export interface DecodeLimits {
  /** MAX_IMAGE_PIXELS: checked from the header before decoding, and by libvips while decoding. */
  maxPixels: number;
  /** HEIC_ENABLED. */
  heic: boolean;
}

/** The JPEG end-of-image marker (ITU-T T.81, B.1.1.3). */
const JPEG_EOI = Buffer.from([0xff, 0xd9]);

/**
 * The decode policy, the same for every model and route, so that an image is decodable for all of them or for
 * none. `read` gets the image at display orientation (EXIF orientation applied; HEIF's irot/imir applied by
 * libheif) and must read every pixel of it (a resize of the whole image or of a region after an extract of the
 * whole decode, a raw output): libvips then decodes the whole file whatever the model, so no model can pass an
 * image whose last rows are broken because its crop never reached them.
 *
 * - libvips decodes with `failOn: 'error'`: truncated or corrupt data fails (422) instead of decoding to grey;
 *   warnings that leave every pixel intact (e.g. extraneous bytes between JPEG markers) are tolerated.
 * - A JPEG that fails and does not end with its end-of-image marker (phones and cut-short uploads leave it out)
 *   is decoded once more with the marker restored, this time with `failOn: 'warning'`: it passes only if every
 *   scan was complete, since a file cut inside its entropy-coded data then warns that its data segment ended
 *   early. A JPEG cut at 90 % of its bytes stays a 422.
 * - HEIC (HEVC) is decoded by libheif in a worker thread (HeicDecoder), its size checked against the pixel
 *   limit before decoding; the pixels then go through the same pipeline as any other image.
 * Errors: IMAGE_UNSUPPORTED_FORMAT, IMAGE_TOO_MANY_PIXELS, IMAGE_DECODE_FAILED.
 */
export async function readImage<T>(bytes: Buffer, limits: DecodeLimits, read: (image: Sharp, header: ImageHeader) => Promise<T>): Promise<T> {
  const header = await readImageHeader(bytes, limits);
  if (header.width * header.height > limits.maxPixels) {
    throw new AppError(ErrorCode.ImageTooManyPixels, `the image is ${header.width}×${header.height} = ${header.width * header.height} pixels; the limit is ${limits.maxPixels}`);
  }
  const heif = header.format === 'heic' || header.format === 'avif';
  // sharp applies EXIF orientation itself except for HEIF, where libvips and libheif leave it to us (see ImageHeader).
  const upright = (image: Sharp) => (heif ? orient(image, header.heifOrientation) : image.rotate());
  const open = (data: Buffer, failOn: 'error' | 'warning') => upright(sharp(data, { limitInputPixels: limits.maxPixels, failOn, sequentialRead: true }));
  try {
    if (header.format === 'heic') {
      const pixels = await heicDecoder.decode(bytes, limits.maxPixels);
      return await read(upright(sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: 3 } })), header);
    }
    try {
      return await read(open(bytes, 'error'), header);
    } catch (error) {
      if (header.format !== 'jpeg' || endsWith(bytes, JPEG_EOI)) throw error;
      try {
        return await read(open(Buffer.concat([bytes, JPEG_EOI]), 'warning'), header);
      } catch {
        throw error;
      }
    }
  } catch (error) {
    if (error instanceof AppError) throw error;
    const message = (error as Error).message;
    if (/pixel limit/i.test(message)) throw new AppError(ErrorCode.ImageTooManyPixels, `the image exceeds the ${limits.maxPixels}-pixel limit`);
    throw new AppError(ErrorCode.ImageDecodeFailed, `the ${header.format} image cannot be decoded: ${message}`);
  }
}

/**
 * Turns an image as EXIF orientation `orientation` (1–8) tells a viewer to (EXIF 2.32, tag 0x0112), for pixels
 * whose decoder did not (HEIF). sharp mirrors before it rotates; 5 and 7 are the transpose and transverse.
 */
export function orient(image: Sharp, orientation: number): Sharp {
  switch (orientation) {
    case 2:
      return image.flop();
    case 3:
      return image.rotate(180);
    case 4:
      return image.flip();
    case 5:
      return image.rotate(270).flop();
    case 6:
      return image.rotate(90);
    case 7:
      return image.rotate(90).flop();
    case 8:
      return image.rotate(270);
    default:
      return image;
  }
}

/** The whole image at full resolution (for cutting faces out of it, and for a detector's input and crops). */
export function decodeRgb(bytes: Buffer, limits: DecodeLimits): Promise<DecodedImage> {
  return readImage(bytes, limits, (image) => rawRgb(image));
}

/** 3-channel sRGB raw pixels of a sharp pipeline; alpha is dropped. */
export async function rawRgb(image: Sharp): Promise<DecodedImage> {
  const { data, info } = await image.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
  return { data, width: info.width, height: info.height };
}

function endsWith(bytes: Buffer, tail: Buffer): boolean {
  return bytes.length >= tail.length && bytes.subarray(bytes.length - tail.length).equals(tail);
}
