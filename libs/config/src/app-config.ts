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
}
