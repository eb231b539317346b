import { Queue } from 'bullmq';
import { AppProcess } from '../support/app-process';
import { request } from '../support/http';
import { classifySamples, classifyLoad, until } from '../support/load';
import { TestRedis } from '../support/test-redis';

/**
 * An API process is SIGKILLed while its clients wait. Only its own open connections are lost: the jobs it
 * queued are in Redis, a worker finishes them, and any other API answers them by id.
 */
describe('fault: API killed', () => {
  let redis: TestRedis;
  let doomed: AppProcess;
  let survivor: AppProcess;
  let worker: AppProcess;
  let queue: Queue;

  beforeAll(async () => {
    redis = await TestRedis.start();
    [doomed, survivor, worker] = await Promise.all([
      AppProcess.start('api', { REDIS_URL: redis.url }),
      AppProcess.start('api', { REDIS_URL: redis.url }),
      AppProcess.start('worker', { REDIS_URL: redis.url }),
    ]);
    queue = new Queue('inference', { connection: { host: '127.0.0.1', port: redis.port }, prefix: '{iiq}' });
  });

  afterAll(async () => {
    await queue?.close();
    await Promise.all([doomed, survivor, worker].map((app) => app?.stop()));
    await redis?.stop();
  });

  it('the killed API’s clients lose their connections; its jobs complete and are readable from the other API', async () => {
    let answeredByDoomed = 0;
    const doomedLoad = classifyLoad(doomed.url, { total: 80, concurrency: 32, timeoutMs: 60_000, onOutcome: (o) => (answeredByDoomed += o.status === 200 ? 1 : 0) });
    const survivorLoad = classifyLoad(survivor.url, { total: 40, concurrency: 8, timeoutMs: 60_000 });

    await until(() => answeredByDoomed >= 10, 60_000, 'the first answers from the API about to be killed');
    await doomed.stop('SIGKILL');
    const [doomedOutcomes, survivorOutcomes] = await Promise.all([doomedLoad, survivorLoad]);

    // The other API's clients noticed nothing.
    expect(survivorOutcomes.filter((o) => o.status !== 200 || o.label !== o.expected)).toEqual([]);
    // The killed API's clients got a right answer or a dropped connection, never a wrong answer.
    expect(doomedOutcomes.filter((o) => o.status !== 0 && (o.status !== 200 || o.label !== o.expected))).toEqual([]);
    const dropped = doomedOutcomes.filter((o) => o.status === 0);
    expect(dropped.length).toBeGreaterThan(0);

    // Every job in Redis finishes, including those whose client was cut off, and the surviving API serves each by id.
    const answeredIds = new Set([...doomedOutcomes, ...survivorOutcomes].map((o) => o.jobId).filter(Boolean));
    await until(
      async () => {
        const counts = await queue.getJobCounts('wait', 'active', 'prioritized');
        return counts.wait + counts.active + counts.prioritized === 0;
      },
      30_000,
      'the queue to drain',
    );
    const labelByTopk = new Map(classifySamples().map((sample) => [sample.topk, sample.label]));
    const jobs = await queue.getJobs(['completed', 'failed']);
    // Each request's id and topk: a coalesced job (CLASSIFY_COALESCE_*) holds several, read as `<job>.<index>`.
    const requests = jobs.flatMap((job) =>
      job.name === 'classify-batch' ? (job.data.items as { topk: number }[]).map((item, index) => ({ id: `${job.id}.${index}`, topk: item.topk })) : [{ id: String(job.id), topk: job.data.topk as number }],
    );
    const orphaned = requests.filter((job) => !answeredIds.has(job.id));
    expect(orphaned.length).toBeGreaterThan(0);
    for (const job of orphaned) {
      const byId = await request(`${survivor.url}/v1/jobs/${job.id}`);
      expect(byId.status).toBe(200);
      expect(byId.body.state).toBe('completed');
      expect(byId.body.result.predictions[0].label).toBe(labelByTopk.get(job.topk));
    }
    console.log(`API crash: ${dropped.length} of 80 clients of the killed API lost their connection; ${orphaned.length} of their jobs had been queued, all completed and readable from the other API; 40/40 clients of the other API answered right`);
  });
});
