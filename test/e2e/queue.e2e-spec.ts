import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';
import { setTimeout as sleep } from 'node:timers/promises';

const castle = fixture('castle_image.jpg');
const dog = fixture('dog_beagle_jemma.png');
const common = { ORT_INTRA_OP_THREADS: '1', SHARP_CONCURRENCY: '1' };

function classify(api: AppProcess, body: Buffer, type: string, path = '/v1/classify?topk=1') {
  return request(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': type }, body });
}

describe('several APIs and workers on one Redis', () => {
  let redis: TestRedis;
  const apps: AppProcess[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await redis?.stop();
  });

  it('2 APIs + 3 workers, 60 concurrent requests: every answer right, every job processed exactly once', async () => {
    const env = { ...common, REDIS_URL: redis.url, QUEUE_PREFIX: 'scale' };
    const started = await Promise.all([
      AppProcess.start('api', env),
      AppProcess.start('api', env),
      AppProcess.start('worker', env),
      AppProcess.start('worker', env),
      AppProcess.start('worker', env),
    ]);
    apps.push(...started);
    const apis = started.slice(0, 2);
    const workers = started.slice(2);

    const requests = Array.from({ length: 60 }, (_, i) => {
      const isDog = i % 3 === 0;
      return classify(apis[i % 2], isDog ? dog : castle, isDog ? 'image/png' : 'image/jpeg').then((response) => ({ response, expected: isDog ? 'beagle' : 'castle' }));
    });
    const results = await Promise.all(requests);
    const apiErrors = apis.flatMap((api) => api.logs.filter((line) => line.level === 'error'));
    expect(apiErrors).toEqual([]);
    for (const { response, expected } of results) {
      expect({ status: response.status, body: response.body }).toMatchObject({ status: 200, body: { predictions: [{ label: expected }] } });
    }

    const ids = results.map(({ response }) => response.body.id as string);
    expect(new Set(ids).size).toBe(60);
    // A request's queue job: its own, or the coalesced job it is item `<job>.<index>` of (CLASSIFY_COALESCE_*).
    const queueJobOf = (id: string) => id.split('.')[0];
    const jobIds = [...new Set(ids.map(queueJobOf))];
    // Each queue job must appear in exactly one job.started line across all workers.
    const startedLines = workers.flatMap((worker) => worker.logsWith('job.started').map((line) => ({ jobId: line.jobId as string, pid: worker.pid })));
    for (const jobId of jobIds) expect(startedLines.filter((line) => line.jobId === jobId)).toHaveLength(1);
    expect(startedLines).toHaveLength(jobIds.length);
    // and each answer names the worker that logged it
    for (const { response } of results) {
      const processedBy = startedLines.find((line) => line.jobId === queueJobOf(response.body.id))!.pid;
      const job = await request(`${apis[0].url}/v1/jobs/${response.body.id}`);
      expect(job.body.result.workerId).toContain(`:${processedBy}`);
    }
    await Promise.all(started.map((app) => app.stop()));
    for (const app of started) expect(app.exited).toBe(true);
    apps.length = 0;
  });

  it('32 concurrent requests are batched: some model batches hold more than one image, every answer right', async () => {
    const env = { ...common, REDIS_URL: redis.url, QUEUE_PREFIX: 'batching', MAX_BATCH_DELAY_MS: '20' };
    const worker = await AppProcess.start('worker', env);
    const api = await AppProcess.start('api', env);
    apps.push(worker, api);
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => classify(api, i % 2 ? dog : castle, i % 2 ? 'image/png' : 'image/jpeg')));
    results.forEach((response, i) => {
      expect(response.status).toBe(200);
      expect(response.body.predictions[0].label).toBe(i % 2 ? 'beagle' : 'castle');
    });
    const batchSizes = results.map((response) => response.body.batchSize as number);
    expect(Math.max(...batchSizes)).toBeGreaterThan(1);
    expect(Math.max(...batchSizes)).toBeLessThanOrEqual(8);
    // the worker's logs agree with what the answers say (once its last lines, which can trail the answers, are in)
    // (a coalesced job logs each of its images as job.item_completed)
    const imageLines = () => [...worker.logsWith('job.completed').filter((line) => line.jobName === 'classify'), ...worker.logsWith('job.item_completed')];
    await worker.waitForLog(() => imageLines().length >= results.length, 10_000);
    const logged = imageLines().map((line) => line.batchSize);
    expect(Math.max(...(logged as number[]))).toBe(Math.max(...batchSizes));
  });

  it('with QueueEvents off, every request still completes by polling', async () => {
    const env = { ...common, REDIS_URL: redis.url, QUEUE_PREFIX: 'polling' };
    const worker = await AppProcess.start('worker', env);
    const api = await AppProcess.start('api', { ...env, QUEUE_EVENTS_ENABLED: 'false', JOB_POLL_INTERVAL_MS: '100', REQUEST_WAIT_MS: '20000' });
    apps.push(worker, api);
    expect(api.logsWith('queue_events.disabled')).toHaveLength(1);
    const results = await Promise.all(Array.from({ length: 12 }, () => classify(api, castle, 'image/jpeg')));
    for (const response of results) {
      expect(response.status).toBe(200);
      expect(response.body.predictions[0].label).toBe('castle');
    }
  });

  it('a request that outlives the wait limit gets 202 + Location, and the job finishes later', async () => {
    const env = { ...common, REDIS_URL: redis.url, QUEUE_PREFIX: 'slow' };
    // No worker yet: the job must wait past REQUEST_WAIT_MS.
    const api = await AppProcess.start('api', { ...env, REQUEST_WAIT_MS: '300' });
    apps.push(api);
    const accepted = await classify(api, castle, 'image/jpeg');
    expect(accepted.status).toBe(202);
    const location = accepted.headers.get('location');
    expect(location).toBe(`/v1/jobs/${accepted.body.id}`);
    expect(accepted.body.state).toBe('waiting');
    expect((await request(`${api.url}${location}`)).body.state).toBe('waiting');

    const worker = await AppProcess.start('worker', env);
    apps.push(worker);
    let job: any;
    await until(async () => (job = (await request(`${api.url}${location}`)).body).state === 'completed', 30_000, 'the job to complete');
    expect(job.state).toBe('completed');
    expect(job.result.predictions[0].label).toBe('castle');
  });

  it('a /v1/classify job queued after analysis jobs runs before them (priority)', async () => {
    const storage = require('node:fs').mkdtempSync(require('node:path').join(require('node:os').tmpdir(), 'iiq-prio-'));
    const env = { ...common, REDIS_URL: redis.url, QUEUE_PREFIX: 'prio', STORAGE_DIR: storage };
    const api = await AppProcess.start('api', env);
    apps.push(api);
    // No worker yet: queue bulk work first.
    const form = new FormData();
    for (const name of ['cat_kitten_224.png', 'dog_beagle_jemma.png', 'face_obama_1.jpg']) form.append('images', new Blob([fixture(name)]), name);
    form.append('models', 'mobilenet_v2,squeezenet1_1,yunet');
    expect((await request(`${api.url}/v1/analyses`, { method: 'POST', body: form })).status).toBe(202);
    const classified = classify(api, castle, 'image/jpeg');
    await api.waitForLog((line) => line.action === 'job.enqueued');
    // One job at a time, so the order the worker takes them in is the queue's order.
    const worker = await AppProcess.start('worker', { ...env, WORKER_CONCURRENCY: '1', MAX_BATCH_SIZE: '1' });
    apps.push(worker);
    const response = await classified;
    expect(response.status).toBe(200);
    const first = worker.logsWith('job.started')[0];
    expect(first.jobName).toBe('classify');
    await worker.waitForLog(() => worker.logsWith('job.completed').length >= 10, 60_000);
    require('node:fs').rmSync(storage, { recursive: true, force: true });
  });

  it('a job whose deadline passed while it waited is not run: it fails with DEADLINE_EXCEEDED', async () => {
    const env = { ...common, REDIS_URL: redis.url, QUEUE_PREFIX: 'deadline' };
    // The client stops waiting after 200 ms; the job's deadline is 1 s; no worker for 1.5 s.
    const api = await AppProcess.start('api', { ...env, REQUEST_WAIT_MS: '200', JOB_DEADLINE_MS: '1000' });
    apps.push(api);
    const accepted = await classify(api, castle, 'image/jpeg');
    expect(accepted.status).toBe(202);
    await sleep(1500);
    const worker = await AppProcess.start('worker', env);
    apps.push(worker);
    let job: any;
    await until(async () => ['failed', 'completed'].includes((job = (await request(`${api.url}/v1/jobs/${accepted.body.id}`)).body).state), 30_000, 'the job to finish');
    expect(job.state).toBe('failed');
    expect(job.error.code).toBe('DEADLINE_EXCEEDED');
    expect(worker.logsWith('job.completed')).toHaveLength(0);
  });

  it('finished jobs do not pile up: completed jobs beyond the retention count are removed', async () => {
    const env = { ...common, REDIS_URL: redis.url, QUEUE_PREFIX: 'retention' };
    const worker = await AppProcess.start('worker', env);
    const api = await AppProcess.start('api', { ...env, COMPLETED_JOB_MAX_COUNT: '3' });
    apps.push(worker, api);
    for (let i = 0; i < 8; i++) expect((await classify(api, castle, 'image/jpeg')).status).toBe(200);
    const client = redis.client();
    try {
      expect(await client.zcard('retention:inference:completed')).toBeLessThanOrEqual(3);
      // the image bytes of finished jobs are gone too: the worker deletes them once BullMQ has recorded the job as
      // completed, which the API may learn (and answer) first, so the last job's DEL can land just after its answer
      await until(async () => (await client.keys('retention:blob:*')).length === 0, 5_000, "the finished jobs' image bytes to be deleted");
      const eventsMaxLen = await client.hget('retention:inference:meta', 'opts.maxLenEvents');
      expect(Number(eventsMaxLen)).toBeGreaterThan(0);
    } finally {
      client.disconnect();
    }
  });
});
