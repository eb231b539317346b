import { readFile } from 'node:fs/promises';
import exifr from 'exifr';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import { AcceptedImageFormat, AppError, ErrorCode } from '@app/contracts';
import { heicDecoder } from './heic/heic-decoder';

/**
 * The libvips loaders this product lets run, by libvips class name (each has Buffer, File and Source variants;
 * images reach sharp as Buffers). All other loaders (SVG, PDF, PPM, FITS, Radiance, CSV, matrix, the vips
 * format…) are blocked for the whole process when this module loads, so libvips' own choice of loader is the
 * format check: an image is accepted exactly when one of these loaders claims it, by the same sniffing that
 * decodes it. SVG and the rest never reach a decoder.
 */
const ALLOWED_LOADERS = ['Jpeg', 'Png', 'Webp', 'Nsgif', 'Tiff', 'Heif'].flatMap((loader) => ['Buffer', 'File', 'Source'].map((input) => `VipsForeignLoad${loader}${input}`));
sharp.block({ operation: ['VipsForeignLoad'] });
sharp.unblock({ operation: ALLOWED_LOADERS });

/** What the header says, before any pixel is decoded. */
export interface ImageHeader {
  format: AcceptedImageFormat;
  /** Display size, after EXIF orientation (HEIF: after its irot/imir transforms). */
  width: number;
  height: number;
  /** Frames (GIF/WebP animations) or pages (TIFF) or top-level images (HEIF); only the first (primary) is analysed. */
  frames: number;
  /**
   * AVIF and HEIC: the EXIF orientation (1–8) the decoder must still apply to libheif's output. A HEIF image's own
   * irot/imir transforms are applied by libheif, and then its EXIF tag is ignored (phones write both, describing
   * the same turn); a file with no transform of its own (e.g. made from a rotated JPEG by heif-enc, which copies
   * the EXIF block) is turned by its EXIF tag, as the JPEG displayed. Other formats: sharp applies EXIF itself.
   */
  heifOrientation: number;
}

export interface FormatOptions {
  /** HEIC_ENABLED: decode HEVC-coded HEIF (HEIC) with libheif; when false, HEIC is an unsupported format. */
  heic: boolean;
}

/** The formats, as the 415 message lists them. */
export function acceptedFormatsText(options: FormatOptions): string {
  return `JPEG, PNG, WebP, GIF, TIFF, AVIF${options.heic ? ', HEIC' : ''}`;
}

/**
 * Reads the header: libvips' loader choice names the container (and refuses what no allowed loader claims,
 * 415); within the HEIF family, libheif names the codec from the file's image items, not from its brands
 * (an AVIF may carry the generic major brand `mif1`, a HEIC too): AV1 is AVIF (libvips decodes it), HEVC is
 * HEIC (our HEIC decoder), anything else is refused. Errors: IMAGE_UNSUPPORTED_FORMAT, IMAGE_DECODE_FAILED
 * (a header that cannot be read or declares no size). `source` is the bytes, or the path of a file holding them.
 */
export async function readImageHeader(source: Buffer | string, options: FormatOptions): Promise<ImageHeader> {
  let metadata: Metadata;
  try {
    metadata = await sharp(source, { limitInputPixels: false }).metadata();
  } catch (error) {
    const message = (error as Error).message;
    // sharp's words when no (unblocked) libvips loader recognises the data.
    if (/unsupported image format/i.test(message)) {
      throw new AppError(ErrorCode.ImageUnsupportedFormat, `the data is not a supported raster image (accepted: ${acceptedFormatsText(options)})`);
    }
    throw new AppError(ErrorCode.ImageDecodeFailed, `the image header cannot be read: ${message}`);
  }
  const { format, heifOrientation } = await formatOf(metadata, source, options);
  const turned = heifOrientation >= 5;
  const width = turned ? metadata.height : (metadata.autoOrient?.width ?? metadata.width);
  const height = turned ? metadata.width : (metadata.autoOrient?.height ?? metadata.height);
  if (!width || !height) throw new AppError(ErrorCode.ImageDecodeFailed, `the ${format} image declares no dimensions`);
  return { format, width, height, frames: metadata.pages ?? 1, heifOrientation };
}

async function formatOf(metadata: Metadata, source: Buffer | string, options: FormatOptions): Promise<{ format: AcceptedImageFormat; heifOrientation: number }> {
  switch (metadata.format) {
    case 'jpeg':
    case 'png':
    case 'webp':
    case 'gif':
    case 'tiff':
      return { format: metadata.format, heifOrientation: 1 };
    case 'heif': {
      // libheif reads the boxes from memory: a file (an upload streamed to disk) is read for HEIF only.
      const { codec, itemTypes, transformed } = await heicDecoder.probe(Buffer.isBuffer(source) ? source : await readFile(source));
      const heifOrientation = transformed ? 1 : await exifOrientation(metadata.exif);
      if (codec === 'av1') return { format: 'avif', heifOrientation };
      if (codec === 'hevc' && options.heic) return { format: 'heic', heifOrientation };
      if (codec === 'hevc') throw new AppError(ErrorCode.ImageUnsupportedFormat, `HEIC images are not accepted here (HEIC_ENABLED=false); accepted: ${acceptedFormatsText(options)}`);
      throw new AppError(ErrorCode.ImageUnsupportedFormat, `this HEIF file holds ${itemTypes.join(', ')} items; only AV1 (AVIF) and HEVC (HEIC) images are decoded`);
    }
    default:
      throw new AppError(ErrorCode.ImageUnsupportedFormat, `${metadata.format} images are not accepted (accepted: ${acceptedFormatsText(options)})`);
  }
}

/** The Orientation tag (1–8) of a raw EXIF block as libvips hands it over (TIFF structure), 1 when absent or unreadable. */
async function exifOrientation(exif: Buffer | undefined): Promise<number> {
  if (!exif) return 1;
  const tiff = exif.subarray(0, 6).toString('latin1') === 'Exif\0\0' ? exif.subarray(6) : exif;
  try {
    const orientation = await exifr.orientation(tiff);
    return typeof orientation === 'number' && orientation >= 1 && orientation <= 8 ? orientation : 1;
  } catch {
    return 1;
  }
}

/** The stored image's format for a Content-Type (it passed readImageHeader when it was stored), or undefined. */
export async function detectImageFormat(bytes: Buffer): Promise<AcceptedImageFormat | undefined> {
  try {
    return (await readImageHeader(bytes, { heic: true })).format;
  } catch {
    return undefined;
  }
}
