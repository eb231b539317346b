import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, ErrorCode, ImageRef } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { REDIS_CLIENT } from '@app/redis';
import { CONTENT_STORE, ContentStore } from '@app/storage';
import { testCrashHook } from './test-crash-hook';

/** Fetches a job's image bytes from wherever the API put them. */
@Injectable()
export class ImageSource {
  /** TEST ONLY (TEST_CRASH_ON_IMAGE_SHA256): dies on one image as a native crash would; undefined in a deployment. */
  private readonly crashOn?: (bytes: Buffer) => void;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
    config: AppConfig,
    @Inject(APP_LOGGER) logger: Logger,
  ) {
    this.crashOn = testCrashHook(config.values.TEST_CRASH_ON_IMAGE_SHA256, (imageHash) => logger.warn({ action: 'worker.test_crash', imageHash }, 'TEST_CRASH_ON_IMAGE_SHA256: this worker kills itself on this image'));
  }

  async read(ref: ImageRef): Promise<Buffer> {
    const bytes = ref.kind === 'blob' ? await this.redis.getBuffer(ref.key) : await this.store.get(ref.tenant, ref.hash);
    if (!bytes) {
      throw new AppError(ErrorCode.InputExpired, ref.kind === 'blob' ? 'the image of this job has expired before a worker reached it' : 'the image is not in the image store (erased, or STORAGE_DIR is not shared with the API)');
    }
    this.crashOn?.(bytes);
    return bytes;
  }

  /**
   * Short-lived bytes of several images at once (a classify-batch job's items: their keys share one Cluster slot),
   * in one MGET; null where a key has expired or was never written.
   */
  async readBlobs(keys: string[]): Promise<(Buffer | null)[]> {
    const values = keys.length === 0 ? [] : await this.redis.mgetBuffer(...keys);
    if (this.crashOn) for (const bytes of values) if (bytes) this.crashOn(bytes);
    return values;
  }

  /** Drops the short-lived bytes of several images in one DEL (a classify-batch job's items). */
  async releaseBlobs(keys: string[]): Promise<void> {
    if (keys.length > 0) await this.redis.del(...keys);
  }

  /** Drops short-lived bytes nobody needs any more; stored images stay. */
  async release(ref: ImageRef | undefined): Promise<void> {
    if (ref?.kind === 'blob') await this.redis.del(ref.key);
  }
}
