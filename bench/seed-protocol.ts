import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { prepareModelInput } from '@app/imaging';
import { CatalogModel, classificationPredictions, ModelExecutor } from '@app/models';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The original work-queue assignment's protocol, re-created for comparison: the web server RPUSHes
 * {id, image(base64)} onto a Redis list and polls `result:<id>` every 0.25 s; the model server wakes every
 * 0.25 s, takes up to BATCH_SIZE items, classifies them and SETs the results. (The seed's HTTP layer is left
 * out, which only flatters it.)
 */
export const SEED_POLL_SECONDS = 0.25;
const QUEUE = 'seed:image_queue';

export class SeedModelServer {
  private running = false;
  private loop?: Promise<void>;

  constructor(
    private readonly redis: Redis,
    private readonly executor: ModelExecutor,
    private readonly model: CatalogModel,
    private readonly batchSize = 32,
  ) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const items = await this.redis.lrange(QUEUE, 0, this.batchSize - 1);
        if (items.length > 0) await this.redis.ltrim(QUEUE, items.length, -1);
        await Promise.all(
          items.map(async (raw) => {
            const { id, image } = JSON.parse(raw) as { id: string; image: string };
            const input = await prepareModelInput(Buffer.from(image, 'base64'), this.model.preprocess, { maxPixels: 50_000_000, heic: true });
            const run = await this.executor.run(this.model.name, input.tensor);
            const predictions = classificationPredictions(run.output[this.model.outputs[0]], this.model.postprocess.activation, 5, this.model.labelList);
            await this.redis.set(`seed:result:${id}`, JSON.stringify(predictions), 'EX', 60);
          }),
        );
        await sleep(SEED_POLL_SECONDS * 1000);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

/** One seed-protocol client request: push, then poll every 0.25 s. */
export async function seedClassify(redis: Redis, image: Buffer, timeoutMs = 30_000): Promise<unknown> {
  const id = randomUUID();
  await redis.rpush(QUEUE, JSON.stringify({ id, image: image.toString('base64') }));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await sleep(SEED_POLL_SECONDS * 1000);
    const result = await redis.get(`seed:result:${id}`);
    if (result) {
      await redis.del(`seed:result:${id}`);
      return JSON.parse(result);
    }
  }
  throw new Error('seed protocol request timed out');
}
