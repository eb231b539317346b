import type { FastifyInstance } from 'fastify';
import { hasBody, refuseBeforeBody } from '../common/raw-reply';
import { AppConfig } from '@app/config';
import { AppError, ErrorCode } from '@app/contracts';
import { redisTryLater } from '@app/redis';
import { RedisThrottlerStorage } from './redis-throttler-storage';
import { TenantResolver } from './api-keys';
import { LocalRefusalLimit, refusalUncounted } from './local-refusal-limit';

/**
 * With API_KEYS set, a request with a body is refused (401, connection closed) before a byte of the body is
 * read unless it carries a valid key: Nest's guards run only after Fastify has parsed the body, and a 30 MB JSON
 * body per anonymous request is how memory was run out. Refusals count against the client address (at most
 * RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS, then 429), as the rate limiter counts requests without a valid key.
 * /admin has its own credentials and is left to its own hook. When Redis cannot count (full, away) the refusal is
 * still a 401, never a 503 (a request without a valid key cannot succeed later either), counted by this process
 * (LocalRefusalLimit) instead.
 */
export function registerBodyGate(fastify: FastifyInstance, tenants: TenantResolver, storage: RedisThrottlerStorage, config: AppConfig, refusals: LocalRefusalLimit): void {
  const env = config.values;
  fastify.addHook('onRequest', async (request, reply) => {
    if (!tenants.enabled || !hasBody(request) || request.url.startsWith('/admin')) return;
    const refusal = tenants.refusal(request);
    if (!refusal) return;
    const limit = env.RATE_LIMIT_MAX || Number.MAX_SAFE_INTEGER;
    let record: Awaited<ReturnType<RedisThrottlerStorage['increment']>>;
    try {
      record = await storage.increment(`refused-body:${request.ip}`, env.RATE_LIMIT_WINDOW_MS, limit, env.RATE_LIMIT_WINDOW_MS, 'default');
    } catch (error) {
      if (!redisTryLater(error)) throw error;
      return refuseBeforeBody(reply, refusalUncounted(refusals, request.ip, refusal), true);
    }
    const error = record.isBlocked
      ? new AppError(ErrorCode.RateLimited, 'too many requests without a valid API key from this address; try again later', { retryAfterSeconds: Math.max(1, Math.ceil(record.timeToBlockExpire)) })
      : refusal;
    return refuseBeforeBody(reply, error, true);
  });
}
