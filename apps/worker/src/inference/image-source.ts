import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { AppError, ErrorCode, ImageRef } from '@app/contracts';
import { REDIS_CLIENT } from '@app/redis';

/** Fetches a job's image bytes from wherever the API put them. */
@Injectable()
export class ImageSource {
  constructor(@Inject(REDIS_CLIENT) private readonly redis: Redis) {}

  async read(ref: ImageRef): Promise<Buffer> {
    const bytes = await this.redis.getBuffer(ref.key);
    if (!bytes) throw new AppError(ErrorCode.InputExpired, 'the image of this job has expired before a worker reached it');
    return bytes;
  }

  /** Drops bytes nobody needs any more (a retry after this point would find INPUT_EXPIRED, but the job has its result). */
  async release(ref: ImageRef): Promise<void> {
    await this.redis.del(ref.key);
  }
}
