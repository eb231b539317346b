import { Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { InjectThrottlerOptions, InjectThrottlerStorage, ThrottlerGuard, type ThrottlerModuleOptions, type ThrottlerRequest, type ThrottlerStorage } from '@nestjs/throttler';
import type { Logger } from 'pino';
import { APP_LOGGER } from '@app/logging';
import { LogThrottle } from '@app/logging/log-throttle';
import { redisOutOfMemory, redisTryLater } from '@app/redis';
import type { FastifyRequest } from 'fastify';
import { PUBLIC_ROUTE, TenantResolver } from './api-keys';
import { LocalRefusalLimit, refusalUncounted } from './local-refusal-limit';

/** Methods that only read or erase: what a tenant needs to make room in a full Redis. */
const READ_OR_ERASE = new Set(['GET', 'HEAD', 'DELETE']);

/**
 * Nest's ThrottlerGuard, except when Redis is full: the rate-limit script writes (INCR), and a Redis at maxmemory
 * under noeviction refuses it with OOM. A GET, HEAD or DELETE with a valid API key (or any, without API_KEYS) then
 * goes through unlimited (the limiter fails open for it), so tenants can still read and, above all, erase data to
 * free memory; every other method (uploads, new jobs) keeps the 503 + Retry-After that the refusal becomes.
 *
 * A request without a valid key never passes: when Redis cannot count it (full, away, any "try later" error) it gets
 * its 401 all the same (what Redis cannot do changes nothing about a missing or wrong key), counted by this process
 * instead (LocalRefusalLimit: 429 past RATE_LIMIT_MAX per window and address), so a full Redis is no unlimited key
 * guessing (red-team: 3,000 guesses in 3.5 s). Before, such requests got 503, which told clients to retry a request
 * that can never succeed. One `ratelimit.skipped` warning per 10 s at most, with the count held back.
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  private readonly skippedLog = new LogThrottle();

  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    @Inject(APP_LOGGER) private readonly log: Logger,
    private readonly tenants: TenantResolver,
    private readonly refusals: LocalRefusalLimit,
  ) {
    super(options, storage, reflector);
  }

  protected override async handleRequest(requestProps: ThrottlerRequest): Promise<boolean> {
    try {
      return await super.handleRequest(requestProps);
    } catch (error) {
      const { context } = requestProps;
      const { req } = this.getRequestResponse(context);
      const method = String(req.method).toUpperCase();
      const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
      const refusal = isPublic ? null : this.tenants.refusal(req as FastifyRequest);
      if (refusal && redisTryLater(error)) throw refusalUncounted(this.refusals, (req as FastifyRequest).ip, refusal);
      if (!READ_OR_ERASE.has(method) || !redisOutOfMemory(error) || refusal) throw error;
      const suppressed = this.skippedLog.pass();
      if (suppressed !== undefined) {
        this.log.warn(
          { action: 'ratelimit.skipped', requestId: req.id, method, route: req.routeOptions?.url, err: { message: (error as Error).message }, suppressed },
          'Redis is full (OOM): reads and erasures pass without the rate limit until it has room',
        );
      }
      return true;
    }
  }
}
