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
 * POISON_STALL_LIMIT=3 here (2 by default; 3 lets one test show a retry, an analysis and a read of its pair each
 * failing as before) the image is given to workers for three such failures (six dead workers), then answered as the
 * image fault it is (422 IMAGE_CRASHED_WORKER) on every route, with no job queued.
 *
 * Three workers are kept running (each replaced as soon as it dies), with a 1 s lock so a death is noticed in ~2 s.
 */
describe('fault: a poison image that kills the workers holding it', () => {
  const stack = new TestStack();
  const poison = fixture('dog_beagle_jemma.png');
  const poisonHash = createHash('sha256').update(poison).digest('hex');
  const limit = { POISON_STALL_LIMIT: '3' };
  const workerEnv = { ...limit, LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '1000', TEST_CRASH_ON_IMAGE_SHA256: poisonHash };
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
  /** Keeps three workers alive, as Kubernetes or compose restarts a crashed one; counts the processes that died. */
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
    [api] = await Promise.all([stack.start('api', { ...limit, REQUEST_WAIT_MS: '25000', JOB_POLL_INTERVAL_MS: '200' }), startWorker(), startWorker(), startWorker()]);
    supervisor = supervise();
  });

  afterAll(async () => {
    supervising = false;
    await supervisor;
    await stack.stop();
  });

  it('kills workers for POISON_STALL_LIMIT stalled-limit failures, then is a 422 on every route; other images are served; erasure removes its record', async () => {
    // 1. As before: its first request lost two workers and answers 503 with Retry-After (try again).
    const first = await classify(poison);
    expect(`${first.status} ${first.body.error?.code}`).toBe('503 SERVICE_UNAVAILABLE');
    expect(Number(first.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await until(() => exits === 2, 5_000, 'two dead workers');
    // Counted by the worker that failed the job, just after BullMQ recorded the failure.
    await until(async () => (await client.hget(crashKey, 'mobilenet_v2')) === '1', 5_000, 'the first stalled-limit failure counted');

    // 2. The same image and model as an analysis: its job kills two more workers, and (as before) a read of the
    //    pair without a result queues it again: two more. That third stalled-limit failure makes the image poison,
    //    and the pair's result becomes that failure.
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([poison]), 'dog.png');
    expect((await request(`${api.url}/v1/analyses`, { method: 'POST', body: form })).status).toBe(202);
    await until(async () => (await client.hget(crashKey, 'mobilenet_v2')) === '2', 15_000, 'the second stalled-limit failure counted');
    expect(exits).toBe(4);
    expect((await resultOf()).status).toBe(202);
    await until(async () => (await resultOf()).status === 200, 15_000, "the pair's failure record", 250);
    expect(exits).toBe(6);
    const declared = workerLogs('image.poison');
    expect(declared).toHaveLength(1);
    expect(declared[0]).toMatchObject({ tenant: 'default', imageHash: poisonHash, model: 'mobilenet_v2', crashes: 3, jobId: expect.any(String) });

    // 3. From now on: a permanent 4xx on every route, no job queued, no worker killed.
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
    // The replacements of the six dead workers are up, and nothing has killed any of them.
    await until(() => workers.length === 3 && workers.every((worker) => !worker.exited), 15_000, 'three live workers');
    expect(exits).toBe(6);

    // 4. Other images are served as usual.
    const good = await classify(fixture('cat_kitten_224.png'));
    expect(good.status).toBe(200);
    expect(good.body.predictions[0].label).toBe(expectedTop5('mobilenet_v2', 'cat_kitten_224.png')[0].label);

    // 5. Erasing the image erases its crash record with its result.
    const erased = await request(`${api.url}/v1/images/${poisonHash}`, { method: 'DELETE' });
    expect(erased.status).toBe(200);
    expect(erased.body).toMatchObject({ removedCrashRecord: true, removedResults: 1 });
    expect(await client.exists(crashKey)).toBe(0);
    expect(exits).toBe(6);
    console.log('poison image: 6 workers killed (3 stalled-limit failures: classify, analysis, a read of the pair), then 422 IMAGE_CRASHED_WORKER on classify and analyses, nothing queued, no more deaths');
  }, 45_000);
});
