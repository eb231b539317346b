import { createHash } from 'node:crypto';
import { createWriteStream, WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { once } from 'node:events';
import { AppError, ErrorCode, TenantId } from '@app/contracts';
import type { ContentStore } from '@app/storage';

/** An incoming image written to a staging file of the tenant's store: not yet the tenant's copy (see ContentStore.adopt). */
export interface StagedImage {
  path: string;
  /** sha256 (hex) of the bytes, computed while they streamed in. */
  hash: string;
  bytes: number;
}

/**
 * Streams an incoming image (upload part, URL body, decoded base64) into a staging file, hashing it on the way
 * and refusing it (413 IMAGE_TOO_LARGE) the moment it passes `maxBytes`, so an image never has to be held in
 * memory whole. Writes wait for the disk (back-pressure), so memory per image is a few chunks.
 */
export class StagedImageWriter {
  private readonly hash = createHash('sha256');
  private size = 0;
  /** The file stream's first error: thrown by the next write or by finish(). */
  private failure?: Error;

  private constructor(
    readonly path: string,
    private readonly file: WriteStream,
    private readonly maxBytes: number,
  ) {
    // Always listened to: a write still in flight when discard() destroys the stream (an upload refused with 413
    // mid-part) completes with ERR_STREAM_DESTROYED, and an 'error' event nobody listens to ends the process.
    file.on('error', (error) => (this.failure ??= error));
  }

  static async open(store: ContentStore, tenant: TenantId, maxBytes: number): Promise<StagedImageWriter> {
    const path = await store.stagingPath(tenant);
    const file = createWriteStream(path, { flags: 'wx' });
    await once(file, 'open');
    return new StagedImageWriter(path, file, maxBytes);
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.size += chunk.length;
    if (this.size > this.maxBytes) throw new AppError(ErrorCode.ImageTooLarge, `the image is larger than the ${this.maxBytes}-byte limit (MAX_IMAGE_BYTES)`);
    this.hash.update(chunk);
    if (!this.file.write(chunk)) await once(this.file, 'drain');
  }

  async finish(): Promise<StagedImage> {
    this.file.end();
    await once(this.file, 'close');
    if (this.failure) throw this.failure;
    return { path: this.path, hash: this.hash.digest('hex'), bytes: this.size };
  }

  async discard(): Promise<void> {
    // Closed before the file is unlinked: a write in flight finishes first (its error is expected, and recorded).
    const closed = this.file.closed ? Promise.resolve() : once(this.file, 'close').catch(() => undefined);
    this.file.destroy();
    await closed;
    await unlink(this.path).catch(() => undefined);
  }
}

/** Stages a whole image from its chunks; on any failure the staging file is removed and the error rethrown. */
export async function stageImage(store: ContentStore, tenant: TenantId, chunks: AsyncIterable<Buffer> | Buffer[], maxBytes: number): Promise<StagedImage> {
  const writer = await StagedImageWriter.open(store, tenant, maxBytes);
  try {
    for await (const chunk of chunks) await writer.write(chunk);
    return await writer.finish();
  } catch (error) {
    await writer.discard();
    throw error;
  }
}

/** Removes a staged file that was not adopted (a refused or abandoned upload). */
export async function discardStaged(image: StagedImage): Promise<void> {
  await unlink(image.path).catch(() => undefined);
}
