/** Messages between HeicDecoder (any thread that decodes) and heic.thread (the worker thread running libheif). */

/** What libheif reads from a HEIF file's boxes, without decoding. */
export interface HeifProbe {
  /**
   * The codec its coded image items need, as libheif lists the items: `hevc` (HEIC: 'hvc1'/'hev1' items, our
   * HEIC decoder), `av1` (AVIF: 'av01' items, decoded by libvips) or `other` (JPEG, AVC, uncompressed… in HEIF).
   */
  codec: 'hevc' | 'av1' | 'other';
  itemTypes: string[];
  /** The primary image carries transform properties (irot, imir, clap), which libheif applies when decoding. */
  transformed: boolean;
  /** The primary image's size after its irot/imir transforms (display size). */
  width: number;
  height: number;
}

export type HeicTask = { kind: 'probe'; bytes: Uint8Array } | { kind: 'decode'; bytes: Uint8Array; maxPixels: number };

export type HeicTaskResult =
  | { kind: 'probe'; probe: HeifProbe }
  /** Interleaved 8-bit RGB, rows packed, display orientation (irot/imir applied); shared memory, so not copied. */
  | { kind: 'decoded'; data: SharedArrayBuffer; width: number; height: number }
  | { kind: 'refused'; reason: 'unreadable' | 'too-many-pixels'; message: string };
