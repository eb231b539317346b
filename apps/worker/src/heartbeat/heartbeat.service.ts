import { Inject, Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { hostname } from 'node:os';
import { ELDHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { WorkerHeartbeat } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { WorkerRegistry } from '@app/redis';
import { ModelHost } from '../inference/model-host';
import { workerId } from '../worker-id';

/**
 * Publishes this worker's presence, loaded models and event-loop delay in Redis with a TTL of three
 * beats (WorkerRegistry; the API reads them for readiness and /v1/models), and logs the delay: it must stay far
 * below lockDuration/2.
 */
@Injectable()
export class HeartbeatService implements OnModuleInit, OnApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private readonly delay: ELDHistogram = monitorEventLoopDelay({ resolution: 10 });
  private readonly startedAt = Date.now();
  /**
   * Why the last heartbeat could not be written, until one is: readiness reports it. Reads can still work when
   * writes do not (a Redis that became a read-only replica answers READONLY to writes only), and a worker that
   * cannot write cannot record a job's result either.
   */
  lastFailure?: string;

  constructor(
    private readonly config: AppConfig,
    private readonly models: ModelHost,
    private readonly registry: WorkerRegistry,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  onModuleInit(): void {
    this.delay.enable();
    const interval = this.config.values.WORKER_HEARTBEAT_MS;
    this.timer = setInterval(() => void this.beat(interval), interval);
    this.timer.unref();
  }

  /** Announces the worker at once (e.g. right after its models load) instead of at the next interval. */
  beatNow(): Promise<void> {
    return this.beat(this.config.values.WORKER_HEARTBEAT_MS);
  }

  private async beat(interval: number): Promise<void> {
    const heartbeat: WorkerHeartbeat = {
      workerId,
      pid: process.pid,
      host: hostname(),
      startedAt: this.startedAt,
      models: this.models.loadedModels,
      eventLoopDelayP99Ms: Math.round(this.delay.percentile(99) / 1e4) / 100,
    };
    const maxMs = Math.round(this.delay.max / 1e4) / 100;
    this.delay.reset();
    if (heartbeat.models.length > 0) {
      this.logger.debug({ action: 'worker.heartbeat', workerId, eventLoopDelayP99Ms: heartbeat.eventLoopDelayP99Ms, eventLoopDelayMaxMs: maxMs }, 'heartbeat');
      if (maxMs > this.config.values.LOCK_DURATION_MS / 4) {
        this.logger.warn({ action: 'worker.event_loop_blocked', workerId, eventLoopDelayMaxMs: maxMs }, 'event loop blocked long enough to endanger job locks');
      }
      try {
        await this.registry.announce(heartbeat, interval * 3);
        this.lastFailure = undefined;
      } catch (error) {
        this.lastFailure = (error as Error).message;
        this.logger.warn({ action: 'worker.heartbeat_failed', err: error }, 'heartbeat failed');
      }
    }
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.delay.disable();
    await this.registry.withdraw(workerId).catch(() => undefined);
  }
}
