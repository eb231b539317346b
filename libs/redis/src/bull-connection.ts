import type { SharedBullAsyncConfiguration } from '@nestjs/bullmq';
import { AppConfig } from '@app/config';
import { redisOptionsFromUrl } from './redis-options';

/** BullModule.forRootAsync options shared by API and worker: same Redis, same key prefix. */
export const bullRootOptions: SharedBullAsyncConfiguration = {
  inject: [AppConfig],
  useFactory: (config: AppConfig) => ({
    prefix: config.values.QUEUE_PREFIX,
    // BullMQ needs maxRetriesPerRequest null on blocking connections; it sets that itself for workers.
    connection: redisOptionsFromUrl(config.values.REDIS_URL),
  }),
};
