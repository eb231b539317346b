/**
 * The stack's own floor, for npm run bench: the HTTP server and the queue the service is built on, doing no
 * work of their own. One child process per role, so the bench can read each one's CPU time from /proc:
 *   floor.js echo    Fastify on PORT; raw image bodies read as a Buffer (as the API does); answers {bytes}.
 *   floor.js api     the same server, plus the service's payload handling per request: SET the bytes under a
 *                    key with a TTL, queue.add (jobId, priority, retention), wait for the completion through
 *                    QueueEvents (BullMQ's own job.waitUntilFinished), answer the return value.
 *   floor.js worker  a BullMQ Worker (same concurrency as the service's) that GETs the bytes, returns at once,
 *                    and DELs the bytes once the job is recorded as completed.
 * Env: PORT (echo, api), REDIS_URL, QUEUE_PREFIX. Prints one JSON line {"ready":true} once it serves or consumes.
 * No logging, no auth, no limits: everything the service does beyond this is its own cost.
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { Job, Queue, QueueEvents, Worker } from 'bullmq';
import Redis from 'ioredis';
import { RAW_IMAGE_CONTENT_TYPES } from '@app/contracts';

const role = process.argv[2];
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.QUEUE_PREFIX ?? 'floor';
const QUEUE = 'floor';
const connection = () => new Redis(redisUrl, { maxRetriesPerRequest: null });

async function server(handle: (bytes: Buffer) => Promise<unknown>): Promise<void> {
  const app = Fastify({ bodyLimit: 10 * 1024 * 1024 });
  app.addContentTypeParser(RAW_IMAGE_CONTENT_TYPES, { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  app.post('/v1/classify', async (request) => handle(request.body as Buffer));
  await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
}

async function main(): Promise<void> {
  if (role === 'echo') {
    await server(async (bytes) => ({ bytes: bytes.length }));
  } else if (role === 'api') {
    const redis = connection();
    const queue = new Queue(QUEUE, { connection: connection(), prefix });
    const events = new QueueEvents(QUEUE, { connection: connection(), prefix });
    // One pair of listeners per waiting request (waitUntilFinished): no listener cap.
    queue.setMaxListeners(0);
    events.setMaxListeners(0);
    await events.waitUntilReady();
    await server(async (bytes) => {
      const jobId = randomUUID();
      const key = `${prefix}:blob:${jobId}`;
      await redis.set(key, bytes, 'EX', 900);
      const job = await queue.add('classify', { image: { kind: 'blob', key }, enqueuedAt: Date.now() }, { jobId, priority: 1, attempts: 3, removeOnComplete: { age: 3600, count: 1000 }, removeOnFail: { age: 86400, count: 5000 } });
      return job.waitUntilFinished(events, 30_000);
    });
  } else if (role === 'worker') {
    const redis = connection();
    const worker = new Worker(
      QUEUE,
      async (job: Job) => {
        const bytes = await redis.getBuffer(job.data.image.key);
        return { bytes: bytes?.length ?? 0 };
      },
      { connection: connection(), prefix, concurrency: Number(process.env.FLOOR_CONCURRENCY ?? 32) },
    );
    worker.on('completed', (job: Job) => void redis.del(job.data.image.key));
    await worker.waitUntilReady();
  } else {
    throw new Error(`unknown floor role "${role}" (echo, api, worker)`);
  }
  console.log(JSON.stringify({ ready: true, role }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
