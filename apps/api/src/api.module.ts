import { DynamicModule, Module, RequestMethod } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import type Redis from 'ioredis';
import type { FastifyRequest } from 'fastify';
import { RedisThrottlerStorage } from './auth/redis-throttler-storage';
import { RateLimitGuard } from './auth/rate-limit.guard';
import { ApiKeyGuard, TenantResolver } from './auth/api-keys';
import { AuthModule } from './auth/auth.module';
import { BullModule } from '@nestjs/bullmq';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AppConfig, AppConfigModule } from '@app/config';
import { RedisKeys } from '@app/contracts';
import { LoggingModule } from '@app/logging';
import { bullRootOptions, inferenceQueueRegistration, REDIS_CLIENT, RedisModule } from '@app/redis';
import { StorageModule } from '@app/storage';
import { AnalysesController } from './analyses/analyses.controller';
import { FacesController } from './faces/faces.controller';
import { FacesService } from './faces/faces.service';
import { ApiMetrics } from './ops/api-metrics';
import { HealthController } from './ops/health.controller';
import { MetricsController } from './ops/metrics.controller';
import { TerminusModule } from '@nestjs/terminus';
import { ImageFetcher } from './url-intake/image-fetcher';
import { AnalysisJobs } from './analyses/analysis-jobs';
import { AnalysisService } from './analyses/analysis.service';
import { ImageEventsHub } from './images/image-events.hub';
import { ImagesController } from './images/images.controller';
import { ImagesService } from './images/images.service';
import { EventStreamSlots } from './images/event-stream-slots';
import { ClassifyController } from './classify/classify.controller';
import { ClassifyService } from './classify/classify.service';
import { ApiExceptionFilter } from './common/api-exception.filter';
import { clientRequestIdOf, reuseRequestId } from './common/request-id';
import { InferenceQueue } from './jobs/inference-queue';
import { JobWaiter } from './jobs/job-waiter';
import { JobsController } from './jobs/jobs.controller';
import { ModelDirectory } from './models/model-directory';
import { ModelsController } from './models/models.controller';
import { ImageUploadReader } from './uploads/image-upload.reader';
import { UploadBudget } from './uploads/upload-budget';

@Module({})
export class ApiModule {
  static forRoot(logger: Logger): DynamicModule {
    return {
      module: ApiModule,
      imports: [
        AppConfigModule,
        LoggingModule.forRoot(logger),
        // One access-log line per request (action http.request) with the request id the worker also logs.
        LoggerModule.forRoot({
          forRoutes: [{ path: '{*splat}', method: RequestMethod.ALL }],
          pinoHttp: {
            logger,
            genReqId: reuseRequestId,
            customProps: (req) => ({ action: 'http.request', requestId: (req as { id?: string }).id, clientRequestId: clientRequestIdOf(req) }),
            customSuccessMessage: (req, res) => `${req.method} ${req.url} ${res.statusCode}`,
            customErrorMessage: (req, res) => `${req.method} ${req.url} ${res.statusCode}`,
            serializers: { req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }), res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }) },
          },
        }),
        RedisModule.forRoot({ failFast: true, commandTimeout: true }),
        StorageModule,
        TerminusModule.forRoot({ errorLogStyle: 'json' }),
        AuthModule,
        // Per valid API key (else per client address), counted in Redis so all API processes share one budget;
        // health and metrics opt out with @SkipThrottle().
        ThrottlerModule.forRootAsync({
          imports: [AuthModule],
          inject: [AppConfig, REDIS_CLIENT, RedisKeys, TenantResolver],
          useFactory: (config: AppConfig, redis: Redis, keys: RedisKeys, tenants: TenantResolver) => ({
            storage: new RedisThrottlerStorage(redis, keys),
            throttlers: [{ ttl: config.values.RATE_LIMIT_WINDOW_MS, limit: config.values.RATE_LIMIT_MAX || Number.MAX_SAFE_INTEGER }],
            // RATE_LIMIT_MAX=0 (a proxy in front limits, or a benchmark): no counting at all, not a count that never
            // reaches its limit (it cost every request a Redis round trip and a key).
            skipIf: config.values.RATE_LIMIT_MAX === 0 ? () => true : undefined,
            getTracker: (request) => tenants.tracker(request as FastifyRequest),
          }),
        }),
        BullModule.forRootAsync(bullRootOptions),
        // The producer fails fast while Redis is down (the request gets 503), rather than queueing commands.
        BullModule.registerQueueAsync(inferenceQueueRegistration({ enableOfflineQueue: false, commandTimeout: true })),
      ],
      controllers: [HealthController, MetricsController, ClassifyController, AnalysesController, FacesController, ImagesController, JobsController, ModelsController],
      providers: [ApiMetrics, ClassifyService, FacesService, ImageFetcher, AnalysisService, AnalysisJobs, ImagesService, ImageEventsHub, EventStreamSlots, InferenceQueue, JobWaiter, ModelDirectory, ImageUploadReader, UploadBudget, { provide: APP_FILTER, useClass: ApiExceptionFilter },
        // In this order: the rate limit counts requests with a missing or wrong key too (per address). A full
        // Redis (OOM) lets reads and erasures through without it (RateLimitGuard).
        { provide: APP_GUARD, useClass: RateLimitGuard },
        { provide: APP_GUARD, useClass: ApiKeyGuard }],
    };
  }
}
