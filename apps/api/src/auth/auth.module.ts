import { Module } from '@nestjs/common';
import { AppConfigModule } from '@app/config';
import { TenantResolver } from './api-keys';

/** Who is calling: shared by the key guard and the rate limiter (which counts failed keys per address). */
@Module({ imports: [AppConfigModule], providers: [TenantResolver], exports: [TenantResolver] })
export class AuthModule {}
