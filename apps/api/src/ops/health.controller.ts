import { Public } from '../auth/api-keys';
import { SkipThrottle } from '@nestjs/throttler';
import { Controller, Get, Inject, Res, ServiceUnavailableException } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckResult, HealthCheckService, HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type { FastifyReply } from 'fastify';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { answerWithin, evictionProblem, readEvictionPolicy, REDIS_CLIENT, redisTryLater, tryLaterMessage } from '@app/redis';
import { InferenceQueue } from '../jobs/inference-queue';
import { ModelDirectory } from '../models/model-directory';

/** Terminus' per-check session (its class is not exported). */
type Indicator = ReturnType<HealthIndicatorService['check']>;

/**
 * Retry-After (s) of a check that is down for a reason other than a Redis reply: no worker, a full queue, a probe
 * past its 1 s (the values of the other 503s: QUEUE_FULL and an unreachable Redis say 2).
 */
const DEFAULT_RETRY_AFTER_SECONDS = 2;
/** Retry-After (s) while Redis may evict keys: an operator has to change its policy, as for a full Redis (OOM: 10). */
const EVICTION_RETRY_AFTER_SECONDS = 10;

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
  async ready(@Res({ passthrough: true }) reply: FastifyReply): Promise<HealthCheckResult> {
    try {
      return await this.readiness();
    } catch (error) {
      // Terminus answers "not ready" with this exception, its report as the body (ApiExceptionFilter keeps it); the
      // header goes on the reply it is sent with, as on every other 503: the longest wait any down check asks for.
      if (error instanceof ServiceUnavailableException) void reply.header('retry-after', String(retryAfterOf(error.getResponse() as HealthCheckResult)));
      throw error;
    }
  }

  private readiness(): Promise<HealthCheckResult> {
    return this.health.check([
      this.probe('redis', async (indicator) => {
        // Checked again here, not only at start: a managed Redis' policy can be changed under a running service.
        const policy = await readEvictionPolicy(this.redis);
        const problem = evictionProblem(policy, this.config.values.REDIS_ALLOW_EVICTION);
        return problem ? indicator.down({ maxmemoryPolicy: policy ?? null, message: problem, retryAfterSeconds: EVICTION_RETRY_AFTER_SECONDS }) : indicator.up({ maxmemoryPolicy: policy ?? null });
      }),
      this.probe('workers', async (indicator) => {
        const workers = (await this.directory.liveWorkers()).filter((worker) => worker.models.length > 0);
        return workers.length > 0 ? indicator.up({ count: workers.length }) : indicator.down({ count: 0, message: 'no live worker with models loaded', retryAfterSeconds: DEFAULT_RETRY_AFTER_SECONDS });
      }),
      this.probe('queue', async (indicator) => {
        const depth = await this.jobs.waitingDepth();
        const limit = this.config.values.MAX_QUEUE_DEPTH;
        return depth < limit ? indicator.up({ waiting: depth, limit }) : indicator.down({ waiting: depth, limit, retryAfterSeconds: DEFAULT_RETRY_AFTER_SECONDS });
      }),
    ]);
  }

  /**
   * One readiness check, answered within 1 s; a check that throws or takes longer is reported down with the reason
   * and `retryAfterSeconds`: what a 503 caused by that error says (redisTryLater: 10 for a full Redis or refused
   * credentials, 2 when unreachable...), else DEFAULT_RETRY_AFTER_SECONDS.
   */
  private probe(name: string, check: (indicator: Indicator) => Promise<HealthIndicatorResult>): () => Promise<HealthIndicatorResult> {
    return async () => {
      const indicator = this.indicators.check(name);
      try {
        return await answerWithin(check(indicator), 1000);
      } catch (error) {
        // A Redis that cannot answer says why, as a 503 would ("…is unreachable", "…refuses the service's credentials").
        const tryLater = redisTryLater(error);
        return indicator.down({ message: tryLater ? tryLaterMessage(tryLater) : (error as Error).message, retryAfterSeconds: tryLater?.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS });
      }
    };
  }
}

/** Retry-After (s) of a readiness 503: the longest `retryAfterSeconds` among the report's down checks (each sets one). */
export function retryAfterOf(report: HealthCheckResult): number {
  const waits = Object.values(report.error ?? {})
    .map((check) => Number((check as { retryAfterSeconds?: unknown }).retryAfterSeconds))
    .filter((seconds) => Number.isFinite(seconds));
  return waits.length > 0 ? Math.max(1, ...waits) : DEFAULT_RETRY_AFTER_SECONDS;
}
