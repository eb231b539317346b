import { join } from 'node:path';
import { Piscina } from 'piscina';
import { AppError, ErrorCode } from '@app/contracts';
import type { HeicTask, HeicTaskResult, HeifProbe } from './heic-task';

export type { HeifProbe } from './heic-task';

/** Decoded pixels: interleaved 8-bit RGB, rows packed, display orientation. */
export interface RgbPixels {
  data: Buffer;
  width: number;
  height: number;
}

/** How long an idle HEIC thread is kept (its WebAssembly heap goes with it); the first file after that pays ~50 ms of start-up. */
const IDLE_MS = 60_000;
/** Files waiting for the thread beyond this are refused as a temporary failure instead of queueing without bound. */
const MAX_QUEUE = 256;

/**
 * The one seam to libheif (libheif-js, WebAssembly), for HEIF files libvips cannot decode: sharp's prebuilt
 * libvips carries libheif with AV1 only, so HEIC (HEVC) goes here. Work runs in one worker thread, started on
 * the first HEIF file and ended after a minute without one, so the event loop never runs a decode. A thread that
 * fails in an unexpected way (a WebAssembly trap on hostile input) is replaced before the next file.
 *
 * Why libheif-js itself and not heic-decode (its thin wrapper): heic-decode decodes the first top-level image
 * rather than the primary one, decides by the `ftyp` major brand alone, and logs to the console on failure.
 */
export class HeicDecoder {
  private pool?: Piscina;

  /** The codec and display size of a HEIF file's primary image, from its boxes (nothing decoded). */
  async probe(bytes: Buffer): Promise<HeifProbe> {
    const result = await this.run({ kind: 'probe', bytes: new Uint8Array(bytes) });
    if (result.kind !== 'probe') throw refusal(result);
    return result.probe;
  }

  /** Decodes the primary image to RGB, refusing it before decoding when it has more than `maxPixels`. */
  async decode(bytes: Buffer, maxPixels: number): Promise<RgbPixels> {
    const result = await this.run({ kind: 'decode', bytes: new Uint8Array(bytes), maxPixels });
    if (result.kind !== 'decoded') throw refusal(result);
    return { data: Buffer.from(result.data), width: result.width, height: result.height };
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.destroy();
  }

  private async run(task: HeicTask): Promise<HeicTaskResult> {
    this.pool ??= new Piscina({ filename: join(__dirname, 'heic.thread.js'), minThreads: 0, maxThreads: 1, idleTimeout: IDLE_MS, maxQueue: MAX_QUEUE });
    const pool = this.pool;
    try {
      return (await pool.run(task, { transferList: [task.bytes.buffer as ArrayBuffer] })) as HeicTaskResult;
    } catch (error) {
      if (/queue is at limit/i.test((error as Error).message)) throw new AppError(ErrorCode.ServiceUnavailable, 'the HEIC decoder is busy: too many HEIC files are waiting; try again shortly');
      // A trapped WebAssembly instance is not to be trusted with the next file.
      if (this.pool === pool) void this.close();
      throw new AppError(ErrorCode.ImageDecodeFailed, `the HEIC image cannot be decoded: ${(error as Error).message}`);
    }
  }
}

function refusal(result: HeicTaskResult): AppError {
  if (result.kind === 'refused' && result.reason === 'too-many-pixels') return new AppError(ErrorCode.ImageTooManyPixels, result.message);
  return new AppError(ErrorCode.ImageDecodeFailed, result.kind === 'refused' ? result.message : `unexpected answer from the HEIC thread: ${result.kind}`);
}

/** The process's HEIC decoder (one thread at most, started on demand). */
export const heicDecoder = new HeicDecoder();
