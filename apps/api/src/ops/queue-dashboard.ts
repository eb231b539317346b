import { timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter as BullBoardFastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type Redis from 'ioredis';
import { sha256 } from '@app/config';
import { RedisKeys } from '@app/contracts';
import { redisTryLater, tryLaterMessage } from '@app/redis';

export interface DashboardAuth {
  user: string;
  password: string;
  /** Failed logins one client address may make per window before every attempt is refused with 429. */
  maxFailures: number;
  windowMs: number;
}

/**
 * bull-board at /admin/queues, behind HTTP Basic auth with the admin credentials (constant-time compare).
 * Failed logins are counted per client address in Redis (shared by every API process); past `maxFailures` in
 * `windowMs` every attempt from that address, right or wrong, gets 429 with Retry-After until the window ends,
 * so the password cannot be guessed at speed. Not mounted at all without ADMIN_PASSWORD. The dashboard shows
 * every tenant's jobs: it is for operators, not tenants.
 */
export async function mountQueueDashboard(fastify: FastifyInstance, queue: Queue, redis: Redis, keys: RedisKeys, auth: DashboardAuth): Promise<void> {
  const basePath = '/admin/queues';
  const serverAdapter = new BullBoardFastifyAdapter();
  createBullBoard({ queues: [new BullMQAdapter(queue)], serverAdapter });
  serverAdapter.setBasePath(basePath);
  const expected = sha256(`${auth.user}:${auth.password}`);
  await fastify.register(async (scope) => {
    // Outside Nest's exception filter, and bull-board's own error handler (its scope's) would answer a thrown
    // error with 500 and Redis' message: Redis trouble in the login count is answered here, as everywhere else.
    scope.addHook('onRequest', async (request, reply) => {
      try {
        return await checkLogin(request, reply);
      } catch (error) {
        const tryLater = redisTryLater(error);
        if (!tryLater) throw error;
        return reply
          .status(503)
          .header('retry-after', String(tryLater.retryAfterSeconds))
          .send({ error: { code: 'SERVICE_UNAVAILABLE', message: tryLaterMessage(tryLater) } });
      }
    });
    const checkLogin = async (request: FastifyRequest, reply: FastifyReply) => {
      const header = request.headers.authorization ?? '';
      const unauthorized = () =>
        reply.status(401).header('www-authenticate', 'Basic realm="queues"').send({ error: { code: 'UNAUTHORIZED', message: 'admin credentials required' } });
      // A browser's first visit carries no credentials: asked for them, it costs no attempt.
      if (!header) return unauthorized();
      // Every attempt is counted before its password is compared (one atomic INCR), so attempts sent all at
      // once cannot slip past the count: at most maxFailures are compared per window. A right password gives
      // its attempt back.
      const failuresKey = keys.adminFailures(request.ip);
      const [[, attempts]] = (await redis.multi().incr(failuresKey).pexpire(failuresKey, auth.windowMs, 'NX').exec()) as [[unknown, number]];
      if (attempts > auth.maxFailures) {
        const retryAfter = Math.max(1, Math.ceil((await redis.pttl(failuresKey)) / 1000));
        return reply
          .status(429)
          .header('retry-after', String(retryAfter))
          .send({ error: { code: 'RATE_LIMITED', message: `too many failed admin logins from this address; try again in ${retryAfter} s` } });
      }
      const presented = header.startsWith('Basic ') ? Buffer.from(header.slice(6), 'base64').toString('utf8') : '';
      if (!timingSafeEqual(sha256(presented), expected)) return unauthorized();
      await redis.decr(failuresKey);
    };
    await scope.register(serverAdapter.registerPlugin() as never, { prefix: basePath });
  });
}
