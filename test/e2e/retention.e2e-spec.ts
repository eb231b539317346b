import type Redis from 'ioredis';
import sharp from 'sharp';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { request } from '../support/http';
import { until } from '../support/load';
import { TestStack } from '../support/test-stack';

const N = 6;
const EVENTS_MAX_LEN = 50;
const KEEP = 4;
const MB = 1024 * 1024;

/**
 * Every retention setting holds whichever process opens the queue: after N classify jobs of each outcome
 * (completed, failed by their input, failed by the infrastructure, abandoned by their clients) Redis holds at most
 * the configured finished jobs, an events stream near EVENTS_MAX_LEN, no image bytes, and little more memory
 * than before, although every failed-by-input image was several megabytes.
 */
describe('retention: what N jobs of each outcome leave in Redis', () => {
  const stack = new TestStack();
  let client: Redis;
  let api: AppProcess;
  // One queue job per request (CLASSIFY_COALESCE_MAX=1): the test counts job records, bytes keys and events per
  // request; a coalesced job is kept and trimmed by the same settings, one record for its whole group.
  const env = { EVENTS_MAX_LEN: String(EVENTS_MAX_LEN), COMPLETED_JOB_MAX_COUNT: String(KEEP), FAILED_JOB_MAX_COUNT: String(KEEP), JOB_ATTEMPTS: '1', CLASSIFY_COALESCE_MAX: '1' };
  const classify = (bytes: Buffer, signal?: AbortSignal) => request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: bytes, signal });
  /** Memory of the data itself (INFO memory's used_memory_dataset): without client buffers, which shrink by themselves later. */
  // Redis computes it as used_memory − used_memory_overhead in unsigned arithmetic: while the overhead briefly
  // exceeds the total (client buffers accounted in between) it reads as ~2^64. Such a reading is taken again.
  const datasetMemory = async () => {
    for (let attempt = 0; ; attempt++) {
      const value = Number(/^used_memory_dataset:(\d+)/m.exec(await client.info('memory'))![1]);
      if (value < 2 ** 62 || attempt >= 50) return value;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  beforeAll(async () => {
    await stack.startRedis();
    client = stack.client();
    api = await stack.start('api', { ...env, REQUEST_WAIT_MS: '20000' });
  });

  afterAll(() => stack.stop());

  it('finished jobs, events, image bytes and memory stay within the settings', async () => {
    // A 4 MB JPEG of noise, cut short: its header passes the API's checks, decoding fails in the worker (422).
    const noise = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).jpeg({ quality: 95 }).toBuffer();
    const broken = noise.subarray(0, Math.floor(noise.length * 0.9));
    expect(broken.length).toBeGreaterThan(2 * MB);
    const castle = fixture('castle_image.jpg');
    const before = await datasetMemory();

    // No worker yet. Abandoned: clients that hang up after 1 s.
    await Promise.all(Array.from({ length: N }, () => classify(castle, AbortSignal.timeout(1000)).catch(() => undefined)));
    // Failed by the infrastructure: queued (the client got 202), then their bytes vanish before a worker reads them.
    const queuedApi = await stack.start('api', { ...env, REQUEST_WAIT_MS: '100' });
    const queued = await Promise.all(Array.from({ length: N }, () => request(`${queuedApi.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle })));
    expect(queued.map((answer) => answer.status)).toEqual(queued.map(() => 202));
    await client.del(...queued.map((answer) => `iiq:blob:${answer.body.id}`));

    const worker = await stack.start('worker', env);
    // The worker opened the queue too: the events cap in the queue's meta is still ours, not BullMQ's default.
    expect(await client.hget('{iiq}:inference:meta', 'opts.maxLenEvents')).toBe(String(EVENTS_MAX_LEN));
    await until(() => worker.logsWith('job.failed').length >= N, 30_000, 'the jobs without bytes to fail');
    // Completed, and failed by their input.
    const completed = await Promise.all(Array.from({ length: N }, () => classify(castle)));
    expect(completed.map((answer) => answer.status)).toEqual(completed.map(() => 200));
    const failed = [];
    for (let i = 0; i < N; i++) failed.push(await classify(broken));
    expect(failed.map((answer) => `${answer.status} ${answer.body.error.code}`)).toEqual(failed.map(() => '422 IMAGE_DECODE_FAILED'));
    // The worker deletes the bytes once the failure is recorded (its 'failed' event comes just after the answer).
    await until(async () => (await client.keys('iiq:blob:*')).length === 0, 10_000, 'no image bytes left in Redis');

    const keys = await client.keys('*');
    const jobHashes = keys.filter((key) => /^\{iiq\}:inference:[0-9a-f-]{36}$/.test(key));
    const events = await client.xlen('{iiq}:inference:events');
    const grown = (await datasetMemory()) - before;
    const completedJob = (await client.zrange('{iiq}:inference:completed', '0', '0'))[0];
    const [jobBytes, eventsBytes] = await Promise.all([client.memory('USAGE', `{iiq}:inference:${completedJob}`), client.memory('USAGE', '{iiq}:inference:events')]);
    // Kept: the newest KEEP completed and KEEP failed jobs; the abandoned ones were removed before a worker saw them.
    expect(await client.zcard('{iiq}:inference:completed')).toBe(KEEP);
    expect(await client.zcard('{iiq}:inference:failed')).toBe(KEEP);
    expect(jobHashes.length).toBe(2 * KEEP);
    expect(worker.logsWith('job.started').length).toBe(3 * N);
    // Trimmed approximately (whole stream nodes of 100 entries): a little over the cap at most, far under what ran.
    expect(events).toBeLessThanOrEqual(EVENTS_MAX_LEN + 100);
    // 6 broken images of 3.6 MB went through Redis: none of it stayed.
    expect(grown).toBeLessThan(2 * MB);
    console.log(
      `Retention: ${4 * N} jobs (${N} completed, ${N} failed by input of ${(broken.length / MB).toFixed(1)} MB, ${N} failed by infrastructure, ${N} abandoned) left ` +
        `${keys.length} keys (${jobHashes.length} job records), an events stream of ${events} entries (cap ${EVENTS_MAX_LEN}), dataset memory ${(grown / MB).toFixed(2)} MB above the start; a completed job's record ${jobBytes} bytes, the stream ${eventsBytes} bytes`,
    );
  });
});
