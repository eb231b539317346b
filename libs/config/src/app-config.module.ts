import { Global, Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { AppConfig } from './app-config';
import { parseEnv } from './env.schema';

/** The one configuration module: validates the environment at start and shares AppConfig everywhere. */
@Global()
@Module({
  imports: [ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => ({ app: parseEnv(process.env) })] })],
  providers: [AppConfig],
  exports: [AppConfig],
})
export class AppConfigModule {}
