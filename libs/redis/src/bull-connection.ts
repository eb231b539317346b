import type { RegisterQueueAsyncOptions, SharedBullAsyncConfiguration } from '@nestjs/bullmq';
import type { BackoffOptions, KeepJobs, QueueOptions } from 'bullmq';
import { AppConfig, Env } from '@app/config';
import { INFERENCE_QUEUE } from '@app/contracts';
import { RedisConnection } from './redis-connection';

/** BullModule.forRootAsync options shared by API and worker: same Redis, same key prefix. */
export const bullRootOptions: SharedBullAsyncConfiguration = {
  inject: [AppConfig, RedisConnection],
  useFactory: (config: AppConfig, connection: RedisConnection) => ({
    prefix: config.values.QUEUE_PREFIX,
    // BullMQ needs maxRetriesPerRequest null on blocking connections; it sets that itself for workers.
    connection: connection.bullConnection(),
  }),
};

/**
 * Attempts, back-off and retention of finished jobs (age and count), from the environment. Every job the API adds
 * carries them; they are also the queue's defaults and the worker's fallbacks, so no process can apply others.
 */
export function jobRetention(env: Env): { attempts: number; backoff: BackoffOptions; removeOnComplete: KeepJobs; removeOnFail: KeepJobs } {
  return {
    attempts: env.JOB_ATTEMPTS,
    backoff: { type: 'exponential', delay: 500 },
    removeOnComplete: { age: env.COMPLETED_JOB_TTL_SECONDS, count: env.COMPLETED_JOB_MAX_COUNT },
    removeOnFail: { age: env.FAILED_JOB_TTL_SECONDS, count: env.FAILED_JOB_MAX_COUNT },
  };
}

/**
 * The inference queue's options, identical in every process that opens it. BullMQ writes the events stream's cap
 * into the queue's meta hash whenever a Queue opens, and every script trims by what it finds there: a process
 * opening the queue without these options (BullMQ's default cap: 10,000) would undo the others' EVENTS_MAX_LEN.
 */
export function inferenceQueueOptions(env: Env): Pick<QueueOptions, 'streams' | 'defaultJobOptions'> {
  return { streams: { events: { maxLen: env.EVENTS_MAX_LEN } }, defaultJobOptions: jobRetention(env) };
}

/**
 * BullModule.registerQueueAsync for the inference queue, with connection options to add to RedisConnection's.
 * `commandTimeout`: REDIS_COMMAND_TIMEOUT_MS on the Queue's own connection (the API's: a Queue never blocks; its
 * QueueEvents has a connection of its own, from the root options).
 */
export function inferenceQueueRegistration(connection?: { enableOfflineQueue?: boolean; commandTimeout?: boolean }): RegisterQueueAsyncOptions {
  return {
    name: INFERENCE_QUEUE,
    inject: [AppConfig, RedisConnection],
    useFactory: (config: AppConfig, redis: RedisConnection) => {
      if (!connection) return inferenceQueueOptions(config.values);
      const { commandTimeout, ...overrides } = connection;
      const timeout = config.values.REDIS_COMMAND_TIMEOUT_MS;
      return { ...inferenceQueueOptions(config.values), connection: redis.bullConnection({ ...overrides, ...(commandTimeout && timeout > 0 ? { commandTimeout: timeout } : {}) }) };
    },
  };
}
