import { AppProcess } from '../support/app-process';
import { request } from '../support/http';
import { classifyLoad, until } from '../support/load';
import { TestRedis } from '../support/test-redis';

/**
 * A worker is SIGKILLed while it holds a batch, under a load of 200 requests. Its jobs stay "active" with a
 * lock nobody renews; once the lock expires, a live worker's stalled-job check puts them back in the queue.
 * Short lock settings make that take seconds instead of the default 30 s.
 */
describe('fault: worker killed mid-batch', () => {
  // 4 s, not less: on a loaded 2-core machine a live worker's lock renewal (every half lock period) can come late,
  // and a 2 s lock then expired under the survivor too (2 of 200 jobs failed as stalled twice in a red-team run).
  const lockSettings = { LOCK_DURATION_MS: '4000', STALLED_INTERVAL_MS: '2000' };
  let redis: TestRedis;
  let api: AppProcess;
  const workers: AppProcess[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    api = await AppProcess.start('api', { REDIS_URL: redis.url, REQUEST_WAIT_MS: '90000' });
    workers.push(await AppProcess.start('worker', { REDIS_URL: redis.url, ...lockSettings }));
  });

  afterAll(async () => {
    await Promise.all([api, ...workers].map((app) => app?.stop()));
    await redis?.stop();
  });

  it('200 requests: every one answered right exactly once; the killed worker’s jobs are run again elsewhere', async () => {
    const [doomed] = workers;
    const loadDone = classifyLoad(api.url, { total: 200, concurrency: 40, timeoutMs: 120_000 });

    // Kill only once the worker has finished some jobs and holds more than one running job (a batch in flight).
    await until(() => doomed.logsWith('job.completed').length >= 30 && startedNotFinished(doomed).size >= 2, 60_000, 'the worker to hold a batch');
    await doomed.stop('SIGKILL');
    const killedAt = Date.now();
    // Logs are written asynchronously (pino's default), so the lines of the last few milliseconds before a
    // SIGKILL can be lost: the logs only name candidates, and Redis says who really finished each job.
    const candidates = startedNotFinished(doomed);
    const replacement = await AppProcess.start('worker', { REDIS_URL: redis.url, ...lockSettings });
    workers.push(replacement);

    const outcomes = await loadDone;
    const wrong = outcomes.filter((outcome) => outcome.status !== 200 || outcome.label !== outcome.expected);
    expect(wrong).toEqual([]);
    expect(new Set(outcomes.map((outcome) => outcome.jobId)).size).toBe(200);

    // Every answer came from one of the two workers, and every job the killed worker held but never
    // recorded as done was run again by the replacement, whose run is the answer the client got.
    const doomedId = doomed.logsWith('worker.ready')[0].workerId;
    const replacementId = replacement.logsWith('worker.ready')[0].workerId;
    // Keyed by queue job: a request coalesced with others (CLASSIFY_COALESCE_*) answers to `<job>.<index>`.
    const finishedBy = new Map<string, unknown>();
    for (const { jobId } of outcomes) finishedBy.set(queueJobOf(jobId), (await request(`${api.url}/v1/jobs/${jobId}`)).body.result.workerId);
    expect(new Set(finishedBy.values())).toEqual(new Set([doomedId, replacementId]));
    const orphaned = [...candidates].filter((jobId) => finishedBy.get(jobId) !== doomedId);
    expect(orphaned.length).toBeGreaterThan(0);
    for (const jobId of orphaned) expect(finishedBy.get(jobId)).toBe(replacementId);

    // The replacement ran each orphan exactly once (its log lines may trail the answers by a moment).
    const completedByReplacement = () => replacement.logsWith('job.completed').map((line) => String(line.jobId));
    await until(() => orphaned.every((jobId) => completedByReplacement().includes(jobId)), 10_000, 'the replacement to log the orphans');
    for (const jobId of orphaned) expect(completedByReplacement().filter((id) => id === jobId)).toHaveLength(1);

    // A job can also die after its worker finished it but before Redis recorded that: it then runs twice
    // (at-least-once). That is harmless only if both runs give the same answer, which the labels above show.
    const completedByDoomed = new Set(doomed.logsWith('job.completed').map((line) => String(line.jobId)));
    const ranTwice = completedByReplacement().filter((id) => completedByDoomed.has(id));
    const unlogged = candidates.size - orphaned.length;

    const recoveredAt = Math.max(...replacement.logsWith('job.completed').filter((line) => orphaned.includes(String(line.jobId))).map((line) => Date.parse(String(line.time))));
    console.log(`worker crash: 200 requests, 200 answered right, 0 lost; ${orphaned.length} jobs orphaned by SIGKILL and re-run (${ranTwice.length} finished but unrecorded, run twice with the same answer; ${unlogged} finished and recorded whose log line died with the process); last orphan completed ${recoveredAt - killedAt} ms after the kill`);
  });
});

/**
 * The same fault with the shipped lock settings (no override): a survivor's stalled-job check must take the
 * dead worker's jobs within about LOCK_DURATION_MS + STALLED_INTERVAL_MS (5 s + 5 s), not BullMQ's 30 s + 30 s.
 */
describe('fault: worker killed, default lock settings', () => {
  let redis: TestRedis;
  let api: AppProcess;
  let workers: AppProcess[];

  beforeAll(async () => {
    redis = await TestRedis.start();
    api = await AppProcess.start('api', { REDIS_URL: redis.url, REQUEST_WAIT_MS: '90000' });
    workers = await Promise.all([AppProcess.start('worker', { REDIS_URL: redis.url }), AppProcess.start('worker', { REDIS_URL: redis.url })]);
  });

  afterAll(async () => {
    await Promise.all([api, ...(workers ?? [])].map((app) => app?.stop()));
    await redis?.stop();
  });

  it('the jobs of a SIGKILLed worker are finished by the survivor within about 10 s', async () => {
    const [doomed, survivor] = workers;
    const loadDone = classifyLoad(api.url, { total: 120, concurrency: 40, timeoutMs: 90_000 });
    await until(() => startedNotFinished(doomed).size >= 2, 60_000, 'the worker to hold jobs');
    await doomed.stop('SIGKILL');
    const killedAt = Date.now();
    const candidates = startedNotFinished(doomed);
    const outcomes = await loadDone;
    expect(outcomes.filter((outcome) => outcome.status !== 200 || outcome.label !== outcome.expected)).toEqual([]);
    const survivorId = survivor.logsWith('worker.ready')[0].workerId;
    const orphans: string[] = [];
    // A coalesced job is read through one of its requests' ids (`<job>.<index>`).
    const answerOf = new Map(outcomes.map((outcome) => [queueJobOf(outcome.jobId), String(outcome.jobId)]));
    for (const jobId of candidates) if ((await request(`${api.url}/v1/jobs/${answerOf.get(jobId) ?? jobId}`)).body.result.workerId === survivorId) orphans.push(jobId);
    expect(orphans.length).toBeGreaterThan(0);
    await until(() => orphans.every((jobId) => survivor.logsWith('job.completed').some((line) => line.jobId === jobId)), 10_000, 'the survivor to log the orphans');
    const recoveredAt = Math.max(...survivor.logsWith('job.completed').filter((line) => orphans.includes(String(line.jobId))).map((line) => Date.parse(String(line.time))));
    console.log(`worker crash with default locks: ${orphans.length} orphaned jobs finished by the survivor, the last ${recoveredAt - killedAt} ms after the kill`);
    // A deadline, not a speed measure: BullMQ's own defaults (30 s lock, 30 s check) take 30–60 s here.
    expect(recoveredAt - killedAt).toBeLessThan(20_000);
  });
});

/** The queue job a request's id names: its own, or the coalesced job it is item `<job>.<index>` of. */
function queueJobOf(id: unknown): string {
  return String(id).split('.')[0];
}

/** Jobs this worker logged as started and not as finished. */
function startedNotFinished(worker: AppProcess): Set<string> {
  const running = new Set(worker.logsWith('job.started').map((line) => String(line.jobId)));
  for (const line of [...worker.logsWith('job.completed'), ...worker.logsWith('job.failed')]) running.delete(String(line.jobId));
  return running;
}
