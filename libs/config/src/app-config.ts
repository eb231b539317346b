import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { Env } from './env.schema';

/** Typed, already-validated configuration. Inject this rather than reading process.env. */
@Injectable()
export class AppConfig {
  readonly values: Readonly<Env>;

  constructor(configService: ConfigService) {
    this.values = configService.getOrThrow<Env>('app');
  }

  /** What the API checks on every uploaded image before queueing it, and what the worker decodes. */
  get imageLimits(): { maxBytes: number; maxPixels: number; maxFrames: number; heic: boolean } {
    return { maxBytes: this.values.MAX_IMAGE_BYTES, maxPixels: this.values.MAX_IMAGE_PIXELS, maxFrames: this.values.MAX_IMAGE_FRAMES, heic: this.values.HEIC_ENABLED };
  }
}
