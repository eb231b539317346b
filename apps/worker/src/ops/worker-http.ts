import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { AppConfig, enforceIdleTimeout, httpLimits, nodeServerOptions } from '@app/config';
import { APP_LOGGER } from '@app/logging';
import { answerWithin, evictionProblem, readEvictionPolicy, REDIS_CLIENT } from '@app/redis';
import { HeartbeatService } from '../heartbeat/heartbeat.service';
import { ModelHost } from '../inference/model-host';
import { StallWatchdog } from '../inference/stall-watchdog';
import { WorkerMetrics } from './worker-metrics';

/**
 * The worker's small HTTP port (WORKER_HTTP_PORT; 0 picks a free one): /health/live, /health/ready
 * (models loaded, Redis answers with maxmemory-policy noeviction, not stalled, not shutting down) and /metrics. Plain
 * node:http with the same HTTP time limits as the API: the worker has no other HTTP surface, so a web framework
 * would only add weight here.
 */
@Injectable()
export class WorkerHttp implements OnApplicationBootstrap, OnApplicationShutdown {
  private server?: Server;
  private shuttingDown = false;

  constructor(
    private readonly config: AppConfig,
    private readonly models: ModelHost,
    private readonly metrics: WorkerMetrics,
    private readonly watchdog: StallWatchdog,
    private readonly heartbeat: HeartbeatService,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const limits = httpLimits(this.config.values);
    this.server = createServer(nodeServerOptions(limits), (request, response) => {
      void this.handle(request.url ?? '/').then(
        ({ status, type, body }) => response.writeHead(status, { 'content-type': type }).end(body),
        (error) => response.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'error', message: (error as Error).message })),
      );
    });
    enforceIdleTimeout(this.server, limits.idleTimeout);
    const env = this.config.values;
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(env.WORKER_HTTP_PORT, env.HOST, () => resolve());
    });
    const port = (this.server.address() as AddressInfo).port;
    this.logger.info({ action: 'worker.http_listening', port }, `worker health and metrics on port ${port}`);
  }

  private async handle(url: string): Promise<{ status: number; type: string; body: string }> {
    const json = (status: number, body: unknown) => ({ status, type: 'application/json', body: JSON.stringify(body) });
    if (url === '/health/live') return json(200, { status: 'ok' });
    if (url === '/health/ready') {
      const checks: Record<string, { status: 'up' | 'down'; message?: string }> = {
        models: this.models.loadedModels.length > 0 ? { status: 'up' } : { status: 'down', message: 'models not loaded yet' },
        shutdown: this.shuttingDown ? { status: 'down', message: 'shutting down' } : { status: 'up' },
        stall: this.stallCheck(),
        heartbeat: this.heartbeat.lastFailure ? { status: 'down', message: `the last heartbeat could not be written to Redis: ${this.heartbeat.lastFailure}` } : { status: 'up' },
      };
      try {
        const policy = await answerWithin(readEvictionPolicy(this.redis), 1000);
        const problem = evictionProblem(policy, this.config.values.REDIS_ALLOW_EVICTION);
        checks.redis = problem ? { status: 'down', message: problem } : { status: 'up' };
      } catch (error) {
        checks.redis = { status: 'down', message: (error as Error).message };
      }
      const ok = Object.values(checks).every((check) => check.status === 'up');
      return json(ok ? 200 : 503, { status: ok ? 'ok' : 'error', info: checks });
    }
    if (url === '/metrics') return { status: 200, type: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
    return json(404, { status: 'error', message: 'not found' });
  }

  /** Down while the stall watchdog sees jobs waiting that no worker takes (see StallWatchdog). */
  private stallCheck(): { status: 'up' | 'down'; message?: string } {
    const since = this.watchdog.state.stalledSince;
    if (since === undefined) return { status: 'up' };
    return { status: 'down', message: `stalled for ${Date.now() - since} ms: jobs wait, none is active, this worker takes none (${this.config.values.WORKER_STALL_ACTION})` };
  }

  beforeApplicationShutdown(): void {
    this.shuttingDown = true;
  }

  async onApplicationShutdown(): Promise<void> {
    this.shuttingDown = true;
    await new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve(undefined)));
  }
}
