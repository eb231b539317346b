import { DynamicModule, Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import type { Logger } from 'pino';
import { AppConfig, AppConfigModule } from '@app/config';
import { APP_LOGGER, LoggingModule } from '@app/logging';
import { bullRootOptions, inferenceQueueRegistration, RedisModule } from '@app/redis';
import { AnalysisStore, FaceSnapshots, FaceStore, PoisonImages, StorageModule } from '@app/storage';
import { AnalyzeHandler } from './analyze/analyze.handler';
import { FaceIndex, faceIndexOptions } from './faces/face-index';
import { MatchFacesHandler } from './faces/match-faces.handler';
import { WorkerHttp } from './ops/worker-http';
import { WorkerMetrics } from './ops/worker-metrics';
import { ClassifyBatchHandler } from './classify/classify-batch.handler';
import { ClassifyHandler } from './classify/classify.handler';
import { HeartbeatService } from './heartbeat/heartbeat.service';
import { ImageInference } from './inference/image-inference';
import { ImageSource } from './inference/image-source';
import { InferenceProcessor } from './inference/inference.processor';
import { PoisonWatch } from './inference/poison-watch';
import { StallWatchdog } from './inference/stall-watchdog';
import { ModelHost } from './inference/model-host';

@Module({})
export class WorkerModule {
  static forRoot(logger: Logger): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        AppConfigModule,
        LoggingModule.forRoot(logger),
        RedisModule.forRoot({ failFast: false }),
        StorageModule,
        BullModule.forRootAsync(bullRootOptions),
        // The same queue options as the API's: BullMQ writes them into the queue's meta hash (events cap) on open.
        BullModule.registerQueueAsync(inferenceQueueRegistration()),
      ],
      providers: [
        WorkerMetrics,
        WorkerHttp,
        ModelHost,
        ImageSource,
        ImageInference,
        ClassifyHandler,
        ClassifyBatchHandler,
        AnalyzeHandler,
        {
          provide: FaceIndex,
          inject: [FaceStore, FaceSnapshots, AppConfig, APP_LOGGER],
          useFactory: (store: FaceStore, snapshots: FaceSnapshots, config: AppConfig, appLogger: Logger) =>
            new FaceIndex(store, snapshots, faceIndexOptions(config.values), appLogger),
        },
        MatchFacesHandler,
        InferenceProcessor,
        {
          provide: PoisonWatch,
          inject: [PoisonImages, AnalysisStore, ModelHost, APP_LOGGER],
          useFactory: (poison: PoisonImages, results: AnalysisStore, models: ModelHost, appLogger: Logger) =>
            new PoisonWatch(poison, results, (name) => models.catalog.list().find((model) => model.name === name)?.task, appLogger),
        },
        StallWatchdog,
        HeartbeatService,
      ],
    };
  }
}
