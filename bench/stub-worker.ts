/**
 * A worker that does no work, for bench/api-pair.ts: it takes `classify` and `classify-batch` jobs from the
 * inference queue like the real worker (same queue, same prefix, concurrency 64), reads their bytes, waits
 * STUB_DELAY_MS (10: a model's latency, without its CPU) and answers a fixed top-5, then deletes the bytes. With the
 * model's CPU gone from the machine, what is measured is the API's own cost. Env: REDIS_URL, QUEUE_PREFIX.
 */
import { Job, Worker } from 'bullmq';
import Redis from 'ioredis';
import { ClassifyBatchJobData, ClassifyBatchJobResult, ClassifyJobData, ClassifyJobResult, ImageRef, INFERENCE_QUEUE, InferenceJobName } from '@app/contracts';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const delayMs = Number(process.env.STUB_DELAY_MS ?? 10);
const redis = new Redis(url);

const answer = (model: string): ClassifyJobResult => ({
  model,
  predictions: [0, 1, 2, 3, 4].map((index) => ({ index, label: `class ${index}`, probability: 0.2 })),
  batchSize: 1,
  timings: { queuedMs: 0, decodeMs: 0, inferenceMs: 0, totalMs: 0 },
  workerId: 'stub',
});

const blobKey = (image: ImageRef): string[] => (image.kind === 'blob' ? [image.key] : []);
const blobKeys = (job: Job): string[] =>
  job.name === InferenceJobName.ClassifyBatch ? (job.data as ClassifyBatchJobData).items.flatMap((item) => blobKey(item.image)) : blobKey((job.data as ClassifyJobData).image);

const worker = new Worker(
  INFERENCE_QUEUE,
  async (job: Job): Promise<ClassifyJobResult | ClassifyBatchJobResult> => {
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    const keys = blobKeys(job);
    if (keys.length > 0) await redis.mget(...keys);
    if (job.name === InferenceJobName.Classify) return answer((job.data as ClassifyJobData).model);
    if (job.name === InferenceJobName.ClassifyBatch) return { items: (job.data as ClassifyBatchJobData).items.map(() => ({ result: answer((job.data as ClassifyBatchJobData).model) })) };
    throw new Error(`the stub worker answers classify jobs only, not ${job.name}`);
  },
  { connection: new Redis(url, { maxRetriesPerRequest: null }), prefix: process.env.QUEUE_PREFIX ?? 'iiq', concurrency: 64 },
);
worker.on('completed', (job: Job) => {
  const keys = blobKeys(job);
  if (keys.length > 0) void redis.del(...keys);
});
void worker.waitUntilReady().then(() => console.log(JSON.stringify({ ready: true, role: 'stub-worker' })));
