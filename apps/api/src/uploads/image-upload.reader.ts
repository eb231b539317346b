import type { Readable } from 'node:stream';
import { Inject, Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TenantResolver } from '../auth/api-keys';
import { AppError, ErrorCode, TenantId } from '@app/contracts';
import { CONTENT_STORE, ContentStore } from '@app/storage';
import { StagedImage, stageImage } from './staged-image';
import { AppConfig } from '@app/config';
import { UploadBudget } from './upload-budget';
import { releaseBytes } from './release-bytes';

export interface ImageUpload {
  bytes: Buffer;
  /** Text fields that came with the image (multipart fields or JSON properties other than the image). */
  fields: Record<string, string>;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The request's parsed JSON object, or undefined for multipart, raw image bodies (Buffers), no body, and a form
 * (application/x-www-form-urlencoded, which the framework parses into an object too: an image sent with
 * `curl --data-binary` and no content-type was answered "JSON body needs …" although no JSON was sent).
 */
export function jsonObjectBody(request: FastifyRequest): Record<string, unknown> | undefined {
  const body = request.body as unknown;
  if (isFormBody(request)) return undefined;
  return body && typeof body === 'object' && !Buffer.isBuffer(body) ? (body as Record<string, unknown>) : undefined;
}

function isFormBody(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded');
}

/** What an ImageMissing answer adds for a form body: how it came to be one, and how to send the image instead. */
function formBodyHint(request: FastifyRequest): string {
  return isFormBody(request) ? ` (this body is a form, application/x-www-form-urlencoded: curl sends that for --data-binary unless told otherwise, e.g. -H 'content-type: image/jpeg')` : '';
}
const DATA_URL_PREFIX = /^data:image\/[a-z0-9.+-]+;base64,/i;

/**
 * Reads one image from a request in any of the accepted forms: multipart field `image`, a raw
 * image/* body, or JSON `{ "image": "<base64>" }`. Size limits are enforced while reading
 * (multipart fileSize, Fastify bodyLimit), never after buffering an unbounded body.
 */
@Injectable()
export class ImageUploadReader {
  /** The image each request read (read()), until release(). */
  private readonly readBytes = new WeakMap<FastifyRequest, Buffer>();

  constructor(
    private readonly config: AppConfig,
    private readonly budget: UploadBudget,
    private readonly tenants: TenantResolver,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
  ) {}

  /**
   * The one image of a request. A multipart image is read into memory under a reservation of MAX_IMAGE_BYTES
   * of the process's upload budget, cut to the file's size once read and held until `reply` is sent (raw and JSON bodies are reserved the same way
   * before Fastify parses them: registerBodyBudget).
   */
  async read(request: FastifyRequest, reply: FastifyReply, fieldName = 'image'): Promise<ImageUpload> {
    const upload = await this.readImage(request, reply, fieldName);
    this.readBytes.set(request, upload.bytes);
    return upload;
  }

  /**
   * Frees the image read() returned for `request` (releaseBytes): call once the route is done with it, when no
   * Redis write, file write or decode still reads it. Call it only after the route's work returned normally: an
   * error can leave a sibling still reading (a Promise.all whose other member rejected first: sharp on a libuv
   * thread read a freed body, SIGSEGV under glibc; admitImage), and an error answer is rare enough to leave its
   * bytes to the GC. Its memory then leaves the process at once instead of at V8's next full GC.
   * @returns bytes freed (0 when nothing was read or the Buffer could not be detached)
   */
  release(request: FastifyRequest): number {
    const bytes = this.readBytes.get(request);
    if (!bytes) return 0;
    this.readBytes.delete(request);
    return releaseBytes(bytes);
  }

  private async readImage(request: FastifyRequest, reply: FastifyReply, fieldName: string): Promise<ImageUpload> {
    if (request.isMultipart()) return this.readMultipart(request, reply, fieldName);
    if (Buffer.isBuffer(request.body)) return { bytes: request.body, fields: {} };
    const json = jsonObjectBody(request);
    if (json) return this.readJson(json, fieldName);
    throw new AppError(ErrorCode.ImageMissing, `send the image as multipart field "${fieldName}", a raw body (content-type image/jpeg, image/png, image/webp, image/heic, … or application/octet-stream), or JSON {"${fieldName}": "<base64>"}${formBodyHint(request)}`);
  }

  /**
   * Several images and repeatable text fields: multipart files in `fieldName` (any number up to
   * MAX_IMAGES_PER_REQUEST), or JSON `{ <fieldName>: [base64, ...], ... }`. Each image is streamed into a
   * staging file of the tenant's store, one at a time: never held whole in memory (a few chunks at a time, the
   * disk's write speed pacing the socket), so it holds none of the upload budget. The consumer adopts or
   * discards each staged image. `fields` is complete once `images` is exhausted (multipart fields may follow
   * the files).
   */
  stageMany(request: FastifyRequest, tenant: TenantId, fieldName = 'images'): { images: AsyncIterable<StagedImage>; fields: Record<string, string[]> } {
    const fields: Record<string, string[]> = {};
    if (request.isMultipart()) return { images: this.multipartImages(request, tenant, fieldName, fields), fields };
    const body = jsonObjectBody(request);
    if (!body) throw new AppError(ErrorCode.ImageMissing, `send multipart files in field "${fieldName}", or JSON {"${fieldName}": ["<base64>", ...]}${formBodyHint(request)}`);
    const list = body[fieldName];
    if (!Array.isArray(list) || list.length === 0 || list.some((item) => typeof item !== 'string')) {
      throw new AppError(ErrorCode.ImageMissing, `JSON body needs "${fieldName}": a non-empty array of base64 strings`);
    }
    this.assertImageCount(list.length);
    for (const [key, value] of Object.entries(body)) {
      if (key === fieldName) continue;
      const values = Array.isArray(value) ? value : [value];
      fields[key] = values.filter((v) => typeof v === 'string' || typeof v === 'number').map(String);
    }
    const stage = (text: string) => stageImage(this.store, tenant, [this.decodeBase64(text)], this.config.values.MAX_IMAGE_BYTES);
    return {
      fields,
      images: (async function* () {
        for (const item of list as string[]) yield await stage(item);
      })(),
    };
  }

  private async *multipartImages(request: FastifyRequest, tenant: TenantId, fieldName: string, fields: Record<string, string[]>): AsyncGenerator<StagedImage> {
    let count = 0;
    for await (const part of request.parts()) {
      if (part.type !== 'file') {
        (fields[part.fieldname] ??= []).push(String(part.value));
        continue;
      }
      if (part.fieldname !== fieldName && part.fieldname !== 'image') {
        part.file.resume();
        throw new AppError(ErrorCode.BadRequest, `unexpected file field "${part.fieldname ?? ''}": send images in field "${fieldName}"`);
      }
      this.assertImageCount(++count);
      yield await stageImage(this.store, tenant, this.fileChunks(part.file), this.config.values.MAX_IMAGE_BYTES);
    }
    if (count === 0) throw new AppError(ErrorCode.ImageMissing, `no images: send at least one file in field "${fieldName}"`);
  }

  /**
   * A multipart file's chunks, failing with 413 the moment the file passes MAX_IMAGE_BYTES. (Busboy truncates
   * the file at the limit but goes on reading and discarding the rest of the part; @fastify/multipart throws
   * only after that, so a 200 MB part would be read to its end first.)
   */
  private fileChunks(file: Readable): AsyncIterable<Buffer> {
    const maxBytes = this.config.values.MAX_IMAGE_BYTES;
    file.once('limit', () => file.destroy(new AppError(ErrorCode.ImageTooLarge, `an uploaded file is larger than the ${maxBytes}-byte limit (MAX_IMAGE_BYTES)`)));
    return file;
  }

  /** MAX_IMAGES_PER_REQUEST, for every way a request can carry images (files, base64 list, URLs). */
  assertImageCount(count: number): void {
    const maxImages = this.config.values.MAX_IMAGES_PER_REQUEST;
    if (count > maxImages) throw new AppError(ErrorCode.BadRequest, `at most ${maxImages} images per request`);
  }

  private async readMultipart(request: FastifyRequest, reply: FastifyReply, fieldName: string): Promise<ImageUpload> {
    const holder = this.tenants.tracker(request);
    let bytes: Buffer | undefined;
    const fields: Record<string, string> = {};
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== fieldName || bytes) {
          // Drain to keep the stream moving, then refuse: exactly one image is expected.
          part.file.resume();
          throw new AppError(ErrorCode.BadRequest, `unexpected file field "${part.fieldname ?? ''}": send exactly one file in field "${fieldName}"`);
        }
        const reservation = await this.budget.holdUntilSent(reply, this.config.values.MAX_IMAGE_BYTES, holder);
        const chunks: Buffer[] = [];
        for await (const chunk of this.fileChunks(part.file)) chunks.push(chunk as Buffer);
        bytes = Buffer.concat(chunks);
        // Held while the request waits for its answer (the bytes stay in memory to queue a lost job again),
        // but only what the file is: a 200 KB photo held 10 MiB for up to REQUEST_WAIT_MS, so 3 waiting uploads
        // of one tenant (or one address behind a proxy) filled its half of the budget.
        reservation.shrinkTo(bytes.length);
      } else {
        fields[part.fieldname] = String(part.value);
      }
    }
    if (!bytes) throw new AppError(ErrorCode.ImageMissing, `the multipart body has no file field "${fieldName}"`);
    return { bytes, fields };
  }

  private readJson(body: Record<string, unknown>, fieldName: string): ImageUpload {
    const value = body[fieldName];
    if (typeof value !== 'string') throw new AppError(ErrorCode.ImageMissing, `JSON body needs "${fieldName}": a base64 string`);
    const fields: Record<string, string> = {};
    for (const [key, field] of Object.entries(body)) {
      if (key === fieldName) continue;
      // A parameter given as an object, array, boolean or null is refused rather than ignored: `"model": {…}`
      // silently answered with the default model (red-team).
      if (typeof field !== 'string' && typeof field !== 'number') throw new AppError(ErrorCode.InvalidParameter, `"${key}" must be a string or a number, got ${field === null ? 'null' : Array.isArray(field) ? 'an array' : typeof field}`);
      fields[key] = String(field);
    }
    return { bytes: this.decodeBase64(value), fields };
  }

  private decodeBase64(text: string): Buffer {
    const compact = text.replace(DATA_URL_PREFIX, '').replace(/\s+/g, '');
    if (compact.length === 0) throw new AppError(ErrorCode.ImageEmpty, 'the base64 image is empty');
    if (compact.length % 4 !== 0 || !BASE64.test(compact)) throw new AppError(ErrorCode.InvalidBase64, 'the image is not valid base64');
    const maxBytes = this.config.values.MAX_IMAGE_BYTES;
    if ((compact.length / 4) * 3 > maxBytes + 2) {
      throw new AppError(ErrorCode.ImageTooLarge, `the image is larger than the ${maxBytes}-byte limit`);
    }
    return Buffer.from(compact, 'base64');
  }
}
