import { Module } from '@nestjs/common';
import { AppConfig, AppConfigModule } from '@app/config';
import { TenantResolver } from './api-keys';
import { LocalRefusalLimit } from './local-refusal-limit';

/**
 * Who is calling: shared by the key guard and the rate limiter (which counts failed keys per address), with the
 * process' own count of refusals for when Redis cannot count them (the rate limiter and the body gate share it).
 */
@Module({
  imports: [AppConfigModule],
  providers: [
    TenantResolver,
    { provide: LocalRefusalLimit, inject: [AppConfig], useFactory: (config: AppConfig) => new LocalRefusalLimit(config.values.RATE_LIMIT_MAX, config.values.RATE_LIMIT_WINDOW_MS) },
  ],
  exports: [TenantResolver, LocalRefusalLimit],
})
export class AuthModule {}
