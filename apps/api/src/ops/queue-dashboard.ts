import { timingSafeEqual, createHash } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter as BullBoardFastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * bull-board at /admin/queues, behind HTTP Basic auth with the admin credentials (constant-time compare).
 * Not mounted at all without ADMIN_PASSWORD.
 */
export async function mountQueueDashboard(fastify: FastifyInstance, queue: Queue, user: string, password: string): Promise<void> {
  const basePath = '/admin/queues';
  const serverAdapter = new BullBoardFastifyAdapter();
  createBullBoard({ queues: [new BullMQAdapter(queue)], serverAdapter });
  serverAdapter.setBasePath(basePath);
  const expected = digest(`${user}:${password}`);
  await fastify.register(async (scope) => {
    scope.addHook('onRequest', async (request, reply) => {
      const header = request.headers.authorization ?? '';
      const presented = header.startsWith('Basic ') ? Buffer.from(header.slice(6), 'base64').toString('utf8') : '';
      if (!timingSafeEqual(digest(presented), expected)) {
        await reply.status(401).header('www-authenticate', 'Basic realm="queues"').send({ error: { code: 'UNAUTHORIZED', message: 'admin credentials required' } });
      }
    });
    await scope.register(serverAdapter.registerPlugin() as never, { prefix: basePath });
  });
}
