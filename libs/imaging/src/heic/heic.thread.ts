/**
 * Runs inside a worker thread (piscina): libheif, built to WebAssembly (libheif-js, LGPL-3.0, with libde265
 * for HEVC), reads and decodes HEIF files. WebAssembly runs on the calling thread and a decode takes about
 * 0.1 s per megapixel, so it never runs on an event loop that serves requests or renews job locks.
 * Only the primary image is decoded; libheif applies its irot/imir transforms (the HEIF way to store
 * orientation, which libvips also follows for AVIF), so the pixels come out in display orientation.
 */
import type { HeicTask, HeicTaskResult, HeifProbe } from './heic-task';

/** The part of libheif's embind API used here (libheif-js/libheif-wasm/libheif.d.ts has the whole of it). */
interface HeifError {
  code: { value: number } | number;
  message?: string;
}
interface HeifChannel {
  id: { value: number } | number;
  width: number;
  height: number;
  stride: number;
  data: Uint8Array;
}
interface LibHeif {
  ready: Promise<unknown>;
  heif_context_alloc(): object;
  heif_context_free(context: object): void;
  heif_context_read_from_memory(context: object, bytes: Uint8Array): HeifError;
  heif_context_get_list_of_item_IDs(context: object): ArrayLike<number>;
  heif_item_get_item_type(context: object, id: number): string;
  heif_js_context_get_primary_image_handle(context: object): object & Partial<HeifError>;
  heif_image_handle_get_width(handle: object): number;
  heif_image_handle_get_height(handle: object): number;
  heif_image_handle_release(handle: object): void;
  heif_js_decode_image2(handle: object, colorspace: unknown, chroma: unknown): Promise<({ image: object; channels: HeifChannel[] } & Partial<HeifError>) | undefined>;
  heif_image_release(image: object): void;
  heif_colorspace: { heif_colorspace_RGB: unknown };
  heif_chroma: { heif_chroma_interleaved_RGB: unknown };
  heif_channel: { heif_channel_interleaved: { value: number } };
  // libheif's C API, for what the embind API does not offer (raw pointers into the WebAssembly heap).
  HEAPU8: Uint8Array;
  HEAP32: Int32Array;
  HEAPU32: Uint32Array;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  _heif_context_alloc(): number;
  _heif_context_free(context: number): void;
  _heif_context_read_from_memory_without_copy(error: number, context: number, data: number, size: number, options: number): void;
  _heif_context_get_primary_image_ID(error: number, context: number, id: number): void;
  _heif_item_get_transformation_properties(context: number, id: number, list: number, count: number): number;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the WebAssembly bundle has no typings of its own for this entry point
const libheif = require('libheif-js/wasm-bundle') as LibHeif;

const HEVC_ITEMS = ['hvc1', 'hev1'];
const AV1_ITEMS = ['av01'];
const codeOf = (value: { value: number } | number) => (typeof value === 'number' ? value : value.value);

function withPrimaryImage<T>(bytes: Uint8Array, use: (context: object, handle: object) => Promise<T>): Promise<T | HeicTaskResult> {
  const context = libheif.heif_context_alloc();
  const read = libheif.heif_context_read_from_memory(context, bytes);
  if (codeOf(read.code) !== 0) {
    libheif.heif_context_free(context);
    return Promise.resolve({ kind: 'refused', reason: 'unreadable', message: `libheif cannot read the file: ${read.message ?? 'unknown error'}` });
  }
  const handle = libheif.heif_js_context_get_primary_image_handle(context);
  if (!handle || (handle.code !== undefined && codeOf(handle.code) !== 0)) {
    libheif.heif_context_free(context);
    return Promise.resolve({ kind: 'refused', reason: 'unreadable', message: `the file has no primary image: ${handle?.message ?? 'unknown error'}` });
  }
  return use(context, handle).finally(() => {
    libheif.heif_image_handle_release(handle);
    libheif.heif_context_free(context);
  });
}

/** Whether the primary image has transform properties (irot, imir, clap), through libheif's C API. */
function hasTransforms(bytes: Uint8Array): boolean {
  const context = libheif._heif_context_alloc();
  const data = libheif._malloc(bytes.length);
  // struct heif_error (code, subcode, message: 12 bytes) and a heif_item_id after it.
  const scratch = libheif._malloc(20);
  try {
    libheif.HEAPU8.set(bytes, data);
    libheif._heif_context_read_from_memory_without_copy(scratch, context, data, bytes.length, 0);
    if (libheif.HEAP32[scratch >> 2] !== 0) return false;
    libheif._heif_context_get_primary_image_ID(scratch, context, scratch + 16);
    if (libheif.HEAP32[scratch >> 2] !== 0) return false;
    return libheif._heif_item_get_transformation_properties(context, libheif.HEAPU32[(scratch + 16) >> 2], 0, 0) > 0;
  } finally {
    libheif._heif_context_free(context);
    libheif._free(data);
    libheif._free(scratch);
  }
}

async function probe(bytes: Uint8Array): Promise<HeicTaskResult> {
  return withPrimaryImage(bytes, async (context, handle): Promise<HeicTaskResult> => {
    const itemTypes = [...new Set(Array.from(libheif.heif_context_get_list_of_item_IDs(context), (id) => libheif.heif_item_get_item_type(context, id)))];
    // Derived images (grid, iovl, iden) are made of coded items: the codecs present are what a decoder needs.
    const codec: HeifProbe['codec'] = itemTypes.some((type) => HEVC_ITEMS.includes(type)) ? 'hevc' : itemTypes.some((type) => AV1_ITEMS.includes(type)) ? 'av1' : 'other';
    const transformed = hasTransforms(bytes);
    return { kind: 'probe', probe: { codec, itemTypes, transformed, width: libheif.heif_image_handle_get_width(handle), height: libheif.heif_image_handle_get_height(handle) } };
  });
}

async function decode(bytes: Uint8Array, maxPixels: number): Promise<HeicTaskResult> {
  return withPrimaryImage(bytes, async (_context, handle): Promise<HeicTaskResult> => {
    const width = libheif.heif_image_handle_get_width(handle);
    const height = libheif.heif_image_handle_get_height(handle);
    if (width * height > maxPixels) {
      return { kind: 'refused', reason: 'too-many-pixels', message: `the image is ${width}×${height} = ${width * height} pixels; the limit is ${maxPixels}` };
    }
    const decoded = await libheif.heif_js_decode_image2(handle, libheif.heif_colorspace.heif_colorspace_RGB, libheif.heif_chroma.heif_chroma_interleaved_RGB);
    if (!decoded || !decoded.channels || (decoded.code !== undefined && codeOf(decoded.code) !== 0)) {
      return { kind: 'refused', reason: 'unreadable', message: `libheif cannot decode the image: ${decoded?.message ?? 'unknown error'}` };
    }
    try {
      const plane = decoded.channels.find((channel) => codeOf(channel.id) === libheif.heif_channel.heif_channel_interleaved.value);
      if (!plane || plane.width !== width || plane.height !== height) return { kind: 'refused', reason: 'unreadable', message: 'libheif returned no RGB plane of the image size' };
      const row = width * 3;
      // Shared memory: the calling thread reads the pixels where they were written, no copy on the way back.
      const data = new SharedArrayBuffer(row * height);
      const packed = new Uint8Array(data);
      for (let y = 0; y < height; y++) packed.set(plane.data.subarray(y * plane.stride, y * plane.stride + row), y * row);
      return { kind: 'decoded', data, width, height };
    } finally {
      libheif.heif_image_release(decoded.image);
    }
  });
}

export default async function handle(task: HeicTask): Promise<HeicTaskResult> {
  await libheif.ready;
  return task.kind === 'probe' ? probe(task.bytes) : decode(task.bytes, task.maxPixels);
}
