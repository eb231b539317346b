import { Public } from '../auth/api-keys';
import { SkipThrottle } from '@nestjs/throttler';
import { Controller, Get, Inject } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { answerWithin, evictionProblem, readEvictionPolicy, REDIS_CLIENT } from '@app/redis';
import { InferenceQueue } from '../jobs/inference-queue';
import { ModelDirectory } from '../models/model-directory';

/** Terminus' per-check session (its class is not exported). */
type Indicator = ReturnType<HealthIndicatorService['check']>;

/**
 * Liveness (the process answers) and readiness (Redis answers and will not evict keys, a worker with models, room
 * in the queue), via @nestjs/terminus. Every check is O(1) or O(workers) in Redis, whatever the keyspace holds.
 */
@ApiTags('health')
@Public()
@SkipThrottle()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly directory: ModelDirectory,
    private readonly jobs: InferenceQueue,
    private readonly config: AppConfig,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
  ) {}

  @Get('live')
  @HealthCheck()
  @ApiOperation({ summary: 'The process is up' })
  live() {
    return this.health.check([]);
  }

  @Get('ready')
  @HealthCheck()
  @ApiOperation({ summary: 'Redis answers with maxmemory-policy noeviction, at least one worker has its models loaded, the queue is under MAX_QUEUE_DEPTH' })
  ready() {
    return this.health.check([
      this.probe('redis', async (indicator) => {
        // Checked again here, not only at start: a managed Redis' policy can be changed under a running service.
        const policy = await readEvictionPolicy(this.redis);
        const problem = evictionProblem(policy, this.config.values.REDIS_ALLOW_EVICTION);
        return problem ? indicator.down({ maxmemoryPolicy: policy ?? null, message: problem }) : indicator.up({ maxmemoryPolicy: policy ?? null });
      }),
      this.probe('workers', async (indicator) => {
        const workers = (await this.directory.liveWorkers()).filter((worker) => worker.models.length > 0);
        return workers.length > 0 ? indicator.up({ count: workers.length }) : indicator.down({ count: 0, message: 'no live worker with models loaded' });
      }),
      this.probe('queue', async (indicator) => {
        const depth = await this.jobs.waitingDepth();
        const limit = this.config.values.MAX_QUEUE_DEPTH;
        return depth < limit ? indicator.up({ waiting: depth, limit }) : indicator.down({ waiting: depth, limit });
      }),
    ]);
  }

  /** One readiness check, answered within 1 s; a check that throws or takes longer is reported down with the reason. */
  private probe(name: string, check: (indicator: Indicator) => Promise<HealthIndicatorResult>): () => Promise<HealthIndicatorResult> {
    return async () => {
      const indicator = this.indicators.check(name);
      try {
        return await answerWithin(check(indicator), 1000);
      } catch (error) {
        return indicator.down({ message: (error as Error).message });
      }
    };
  }
}
