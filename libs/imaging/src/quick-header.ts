import { crc32 } from 'node:zlib';
import type { ImageHeader } from './image-format';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/**
 * Bounds on the walk, so a crafted file costs microseconds on the event loop, never a scan of megabytes: real
 * photos carry fewer than 30 segments before their first scan (APPn, DQT, DHT, DRI, COM) and fewer than 20 chunks
 * before their image data; a file with more is left to libvips, which reads it on libuv's pool.
 */
const MAX_JPEG_SEGMENTS = 64;
const MAX_PNG_CHUNKS_BEFORE_DATA = 32;
/** IDAT chunks are 8–64 kB each in what encoders write: 8,192 of them walk a 64 MB file in well under a millisecond. */
const MAX_PNG_CHUNKS_AFTER_DATA = 8192;
const PNG_EXIF = 0x65584966; // 'eXIf'
const PNG_IEND = 0x49454e44; // 'IEND'
const MAX_EXIF_ENTRIES = 512;
/** 0xFF fill bytes before one marker (T.81 B.1.1.2 allows any number; encoders write none or a few). */
const MAX_FILL_BYTES = 16;
/** Bytes of PNG chunks before the image data whose CRC is checked (text and ICC chunks of real photos: a few kB). */
const MAX_PNG_BYTES_BEFORE_DATA = 256 * 1024;

/**
 * The header of a JPEG or PNG (most uploads) read in JavaScript, without libvips: format, display size (JPEG:
 * after its EXIF orientation, as libvips' autoOrient reports it) and one frame. Undefined whenever the bytes are
 * not a plainly well-formed JPEG or PNG header; those go to readImageHeader (libvips, on libuv's pool), the judge
 * of every format, as before. Synchronous and bounded (see MAX_JPEG_SEGMENTS).
 *
 * Strict on purpose: the API checks pixel count and shape on these numbers and stores them with the image, so they
 * must be libvips' numbers or none. A lenient reader (image-size, tried first) could be led by a crafted file to
 * another size or orientation than libvips reads, and spent a second on a 10 MB one.
 * - JPEG (ITU T.81 B.2): segments from SOI must chain exactly (0xFF fill bytes allowed) up to the first scan; exactly
 *   one frame header, SOF0–SOF2 (others: libvips); no marker without a length before the scan.
 * - Its orientation: at most one APP1 that starts `Exif`, and that one `Exif\0\0` (anywhere before the scan, as
 *   libjpeg keeps it), a TIFF header with magic 42 whose IFD0 offset and every entry lie inside the block; tag 0x0112 absent (upright) or a
 *   SHORT with count 1 and value 1–8. Anything else: libvips.
 * - PNG (ISO 15948): IHDR first, 13 bytes, with valid depth/colour/method fields; the CRC of every chunk before the
 *   image data (at most 256 kB of them); no eXIf chunk anywhere (libvips turns a PNG by it, as it turns a JPEG).
 * - JPEG fill bytes: at most 16 before a marker.
 *
 * Why not libvips here: on the API, sharp's metadata() was a quarter of the CPU of a classify request (paired A/B,
 * bench/api-pair.ts). The API's check only decides what to queue: the worker reads the header with libvips again
 * and decodes with its pixel limit (limitInputPixels) and failOn, so a file that passes here and does not decode is
 * still a 422, from the worker.
 */
export function quickHeader(bytes: Buffer): ImageHeader | undefined {
  if (bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return jpegHeader(bytes);
  if (bytes.length >= 33 && bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return pngHeader(bytes);
  return undefined;
}

function jpegHeader(bytes: Buffer): ImageHeader | undefined {
  let offset = 2;
  let frame: { width: number; height: number } | undefined;
  let exif: Buffer | undefined;
  let scan = false;
  for (let segments = 0; segments < MAX_JPEG_SEGMENTS; segments++) {
    if (offset + 4 > bytes.length || bytes[offset] !== 0xff) return undefined;
    for (let fill = 0; bytes[offset + 1] === 0xff && offset + 2 < bytes.length; fill++) {
      if (fill >= MAX_FILL_BYTES) return undefined;
      offset++;
    }
    const marker = bytes[offset + 1];
    if (marker === 0xda) {
      scan = true;
      break;
    }
    // Markers without a length (TEM, RSTn, SOI, EOI) or a stuffed zero have no place before the first scan.
    if (marker === 0x00 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9) || offset + 4 > bytes.length) return undefined;
    const length = bytes.readUInt16BE(offset + 2);
    const end = offset + 2 + length;
    if (length < 2 || end > bytes.length) return undefined;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      // A frame header: only one, and only the kinds libjpeg reads as everyone's photos (baseline, extended, progressive).
      if (frame || marker > 0xc2 || length < 8) return undefined;
      frame = { height: bytes.readUInt16BE(offset + 5), width: bytes.readUInt16BE(offset + 7) };
    } else if (marker === 0xe1 && length >= 6 && bytes.toString('latin1', offset + 4, offset + 8) === 'Exif') {
      // libvips takes the first APP1 that starts "Exif" as the EXIF block, whatever follows: with a header other than
      // Exif\0\0, or a second such block, which orientation applies is libvips' call.
      if (exif || length < 8 || bytes.toString('latin1', offset + 8, offset + 10) !== '\0\0') return undefined;
      exif = bytes.subarray(offset + 10, end);
    }
    offset = end;
  }
  if (!scan || !frame || frame.width === 0 || frame.height === 0) return undefined;
  const orientation = exif ? exifOrientation(exif) : 1;
  if (orientation === undefined) return undefined;
  const turned = orientation >= 5;
  return { format: 'jpeg', width: turned ? frame.height : frame.width, height: turned ? frame.width : frame.height, frames: 1, heifOrientation: 1 };
}

/**
 * The Orientation (tag 0x0112) of an EXIF block's IFD0 (TIFF 6.0 §2: byte order, 42, IFD0 offset; entries of 12
 * bytes): 1 when IFD0 has none, undefined when the block is not plainly well formed or the tag is not a SHORT 1–8.
 */
function exifOrientation(tiff: Buffer): number | undefined {
  if (tiff.length < 8) return undefined;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return undefined;
  const u16 = (at: number) => (order === 'II' ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number) => (order === 'II' ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd < 8 || ifd + 2 > tiff.length) return undefined;
  const entries = u16(ifd);
  if (entries > MAX_EXIF_ENTRIES || ifd + 2 + entries * 12 > tiff.length) return undefined;
  for (let i = 0; i < entries; i++) {
    const entry = ifd + 2 + i * 12;
    if (u16(entry) !== 0x0112) continue;
    const value = u16(entry + 8);
    return u16(entry + 2) === 3 && u32(entry + 4) === 1 && value >= 1 && value <= 8 ? value : undefined;
  }
  return 1;
}

/** Bit depths each PNG colour type allows (ISO 15948, 11.2.2). */
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

function pngHeader(bytes: Buffer): ImageHeader | undefined {
  if (bytes.readUInt32BE(8) !== 13 || bytes.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  const [depth, colour, compression, filter, interlace] = bytes.subarray(24, 29);
  if (width === 0 || height === 0 || width > 0x7fffffff || height > 0x7fffffff) return undefined;
  if (!PNG_DEPTHS[colour]?.includes(depth) || compression !== 0 || filter !== 0 || interlace > 1) return undefined;
  let offset = 8;
  for (let chunks = 0; ; chunks++) {
    if (chunks >= MAX_PNG_CHUNKS_BEFORE_DATA || offset > MAX_PNG_BYTES_BEFORE_DATA || offset + 12 > bytes.length) return undefined;
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString('latin1', offset + 4, offset + 8);
    if (type === 'IDAT') break;
    const end = offset + 12 + length;
    if (type === 'eXIf' || (type === 'IHDR') !== (offset === 8) || end > bytes.length || end > MAX_PNG_BYTES_BEFORE_DATA) return undefined;
    if (crc32(bytes.subarray(offset + 4, end - 4)) !== bytes.readUInt32BE(end - 4)) return undefined;
    offset = end;
  }
  // After the image data an eXIf may still come: the rest is walked by chunk lengths only (a file cut short ends
  // the walk, as it ends libvips' header read).
  for (let chunks = 0; offset + 8 <= bytes.length; chunks++) {
    const type = bytes.readUInt32BE(offset + 4);
    if (type === PNG_EXIF || chunks >= MAX_PNG_CHUNKS_AFTER_DATA) return undefined;
    if (type === PNG_IEND) break;
    offset += 12 + bytes.readUInt32BE(offset);
  }
  return { format: 'png', width, height, frames: 1, heifOrientation: 1 };
}
