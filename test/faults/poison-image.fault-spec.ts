import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import type { AppProcess } from '../support/app-process';
import { expectedTop5, fixture } from '../support/fixtures';
import { multipart, request } from '../support/http';
import { until } from '../support/load';
import { TestStack } from '../support/test-stack';

/**
 * A "poison" image kills every worker process that holds it (a native crash in a decoder or ONNX Runtime; here the
 * test-only TEST_CRASH_ON_IMAGE_SHA256 hook SIGKILLs the worker when it reads the image). BullMQ sees only lapsed
 * locks and fails the job after two ("stalled more than allowable limit": 503, try again). Without a memory of
 * it, every retry and every read of an analysis pair without a result killed two more workers, for ever. With
 * POISON_STALL_LIMIT=2 the image is given to workers for two such failures (four dead workers), then answered as
 * the image fault it is (422 IMAGE_CRASHED_WORKER) on every route, with no job queued.
 *
 * Two workers are kept running (one replaced as soon as it dies), with a 1 s lock so a death is noticed in ~2 s.
 */
describe('fault: a poison image that kills the workers holding it', () => {
  const stack = new TestStack();
  const poison = fixture('dog_beagle_jemma.png');
  const poisonHash = createHash('sha256').update(poison).digest('hex');
  const workerEnv = { LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '1000', TEST_CRASH_ON_IMAGE_SHA256: poisonHash };
  /** Live workers; everyWorker keeps the dead ones too (their logs). */
  const workers: AppProcess[] = [];
  const everyWorker: AppProcess[] = [];
  let exits = 0;
  let supervising = true;
  let supervisor: Promise<void> | undefined;
  let api: AppProcess;
  let client: Redis;

  const startWorker = async () => {
    const worker = await stack.start('worker', workerEnv);
    workers.push(worker);
    everyWorker.push(worker);
  };
  /** Keeps two workers alive, as Kubernetes or compose restarts a crashed one; counts the processes that died. */
  const supervise = async () => {
    const replacements: Promise<unknown>[] = [];
    while (supervising) {
      for (const worker of [...workers]) {
        if (!worker.exited) continue;
        workers.splice(workers.indexOf(worker), 1);
        exits++;
        replacements.push(startWorker());
      }
      await sleep(25);
    }
    await Promise.allSettled(replacements);
  };
  const classify = (bytes: Buffer) => request(`${api.url}/v1/classify?model=mobilenet_v2&topk=1`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: bytes });
  const resultOf = () => request(`${api.url}/v1/images/${poisonHash}/results/mobilenet_v2`);
  const crashKey = `iiq:{default}:image:${poisonHash}:crashes`;
  const queued = async () => (await client.llen('{iiq}:inference:wait')) + (await client.llen('{iiq}:inference:active')) + (await client.zcard('{iiq}:inference:prioritized'));
  const workerLogs = (action: string) => everyWorker.flatMap((worker) => worker.logsWith(action));

  beforeAll(async () => {
    await stack.startRedis();
    client = stack.client();
    [api] = await Promise.all([stack.start('api', { REQUEST_WAIT_MS: '25000', JOB_POLL_INTERVAL_MS: '200' }), startWorker(), startWorker()]);
    supervisor = supervise();
  });

  afterAll(async () => {
    supervising = false;
    await supervisor;
    await stack.stop();
  });

  it('kills workers for two stalled-limit failures per model, then is a 422 on every route; other images are served; erasure removes its record', async () => {
    // 1. As before: its first request lost two workers and answers 503 with Retry-After (try again).
    const first = await classify(poison);
    expect(`${first.status} ${first.body.error?.code}`).toBe('503 SERVICE_UNAVAILABLE');
    expect(Number(first.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await until(() => exits === 2, 5_000, 'two dead workers');
    // Counted by the worker that failed the job, just after BullMQ recorded the failure.
    await until(async () => (await client.hget(crashKey, 'mobilenet_v2')) === '1', 5_000, 'the first stalled-limit failure counted');

    // 2. The same image and model as an analysis: its job kills two more workers; the second stalled-limit failure
    //    makes it poison, and the pair's result becomes that failure (reads answer it, nothing queued again).
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([poison]), 'dog.png');
    const submitted = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    expect(submitted.status).toBe(202);
    await until(async () => (await resultOf()).status === 200, 20_000, "the pair's failure record", 250);
    expect(exits).toBe(4);
    const declared = workerLogs('image.poison');
    expect(declared).toHaveLength(1);
    expect(declared[0]).toMatchObject({ tenant: 'default', imageHash: poisonHash, model: 'mobilenet_v2', crashes: 2, jobId: expect.any(String) });

    // 3. From now on: a permanent 4xx everywhere, no job queued, no worker killed.
    for (let i = 0; i < 3; i++) {
      const read = await resultOf();
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({ state: 'failed', error: { code: 'IMAGE_CRASHED_WORKER' } });
      const again = await classify(poison);
      expect(`${again.status} ${again.body.error?.code}`).toBe('422 IMAGE_CRASHED_WORKER');
    }
    const resubmitted = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    expect(resubmitted.body.images[0].models.mobilenet_v2).toMatchObject({ state: 'failed', cached: true });
    expect(await queued()).toBe(0);
    // Replacements started for the four dead workers are up, and nothing has killed any of them.
    await until(() => workers.length === 2 && workers.every((worker) => !worker.exited), 15_000, 'two live workers');
    expect(exits).toBe(4);

    // 4. The count is per model: another model's analysis of the image starts from nothing, and each read of its pair
    //    without a result queues the job again (as before), until the second stalled-limit failure, then never.
    const squeezenet = () => request(`${api.url}/v1/images/${poisonHash}/results/squeezenet1_1`);
    const other = multipart({ models: 'squeezenet1_1' });
    other.append('images', new Blob([poison]), 'dog.png');
    expect((await request(`${api.url}/v1/analyses`, { method: 'POST', body: other })).status).toBe(202);
    await until(async () => (await client.hget(crashKey, 'squeezenet1_1')) === '1', 15_000, "squeezenet's first stalled-limit failure");
    expect(exits).toBe(6);
    const requeued = await squeezenet();
    expect(requeued.status).toBe(202);
    await until(async () => (await squeezenet()).status === 200, 15_000, "squeezenet's failure record", 250);
    expect(exits).toBe(8);
    for (let i = 0; i < 3; i++) expect((await squeezenet()).body).toMatchObject({ state: 'failed', error: { code: 'IMAGE_CRASHED_WORKER' } });
    expect(await queued()).toBe(0);
    await until(() => workers.length === 2 && workers.every((worker) => !worker.exited), 15_000, 'two live workers');
    expect(exits).toBe(8);

    // 5. Other images are served as usual.
    const good = await classify(fixture('cat_kitten_224.png'));
    expect(good.status).toBe(200);
    expect(good.body.predictions[0].label).toBe(expectedTop5('mobilenet_v2', 'cat_kitten_224.png')[0].label);

    // 6. Erasing the image erases its crash record with its results.
    const erased = await request(`${api.url}/v1/images/${poisonHash}`, { method: 'DELETE' });
    expect(erased.status).toBe(200);
    expect(erased.body).toMatchObject({ removedCrashRecord: true, removedResults: 2 });
    expect(await client.exists(crashKey)).toBe(0);
    expect(exits).toBe(8);
    console.log('poison image: 4 workers killed per model (2 stalled-limit failures each), then 422 IMAGE_CRASHED_WORKER on classify and analyses, nothing queued, no more deaths');
  }, 45_000);
});
