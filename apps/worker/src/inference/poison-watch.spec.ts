import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { AppError, ErrorCode, InferenceJobName } from '@app/contracts';
import type { CrashSubject, PoisonImages } from '@app/storage/poison-images';
import { PoisonWatch } from './poison-watch';

/** PoisonImages over a Map, with POISON_STALL_LIMIT 2. */
function fakePoison() {
  const counts = new Map<string, number>();
  const key = (s: CrashSubject) => `${s.tenant}/${s.imageHash}/${s.model}`;
  const poison = {
    limit: 2,
    ttlSeconds: 60,
    isPoison: async (s: CrashSubject) => (counts.get(key(s)) ?? 0) >= 2,
    countCrash: async (s: CrashSubject, coalesced = false) => {
      const field = key(s) + (coalesced ? ':coalesced' : '');
      counts.set(field, (counts.get(field) ?? 0) + 1);
      return counts.get(field)!;
    },
    clear: async (s: CrashSubject) => counts.delete(key(s)),
  };
  return { poison: poison as unknown as PoisonImages, counts };
}

function setup() {
  const { poison, counts } = fakePoison();
  const stored: unknown[] = [];
  const lines: Record<string, unknown>[] = [];
  const log = (fields: Record<string, unknown>) => lines.push(fields);
  const logger = { info: log, warn: log, error: log } as unknown as Logger;
  const watch = new PoisonWatch(poison, { putResult: async (_t, _h, record) => (stored.push(record), true) }, () => 'classification', logger);
  return { watch, counts, stored, actions: () => lines.map((line) => line.action) };
}

const job = (name: string, data: object, stalledCounter = 0, id = 'j1') => ({ id, name, data, stalledCounter }) as unknown as Job;
const analyze = (stalledCounter = 0, id = 'j1') => job(InferenceJobName.Analyze, { tenant: 't', imageHash: 'h', model: 'm', requestId: 'r' }, stalledCounter, id);

describe('PoisonWatch', () => {
  it('names what each job is counted against; nothing for a job without the image hash', () => {
    expect(PoisonWatch.subjectsOf(analyze())).toEqual([{ tenant: 't', imageHash: 'h', model: 'm' }]);
    expect(PoisonWatch.subjectsOf(job(InferenceJobName.MatchFaces, { tenant: 't', imageHash: 'h' }))).toEqual([{ tenant: 't', imageHash: 'h', model: 'faces' }]);
    expect(PoisonWatch.subjectsOf(job(InferenceJobName.Classify, { tenant: 't', model: 'm' }))).toEqual([]);
    const items = [{ tenant: 'a', imageHash: 'x' }, { tenant: 'a', imageHash: 'x' }, { tenant: 'b', imageHash: 'x' }];
    expect(PoisonWatch.subjectsOf(job(InferenceJobName.ClassifyBatch, { model: 'm', items }))).toHaveLength(2);
  });

  it('counts stalled-limit failures and declares the image poison once, at the limit, with the pair’s failure record', async () => {
    const { watch, stored, actions } = setup();
    await watch.stalledTooOften(analyze());
    expect(actions()).toEqual(['image.crash_counted']);
    await watch.stalledTooOften(analyze());
    await watch.stalledTooOften(analyze());
    expect(actions()).toEqual(['image.crash_counted', 'image.poison']);
    expect(stored).toEqual([expect.objectContaining({ state: 'failed', model: 'm', error: expect.objectContaining({ code: ErrorCode.ImageCrashedWorker }) })]);
  });

  it('logs a failure that joined an incident already counted (countCrash 0) as such: no count, no verdict', async () => {
    const { watch, stored, actions } = setup();
    (watch as unknown as { poison: PoisonImages }).poison.countCrash = async () => 0;
    await watch.stalledTooOften(analyze());
    expect(actions()).toEqual(['image.crash_same_incident']);
    expect(stored).toEqual([]);
  });

  it("never condemns the images of a coalesced job that died (any of them, of any tenant, may be the killer): they become suspects", async () => {
    const { watch, counts, stored, actions } = setup();
    const items = [{ tenant: 'attacker', imageHash: 'poison' }, { tenant: 'victim', imageHash: 'innocent' }];
    for (let i = 0; i < 4; i++) await watch.stalledTooOften(job(InferenceJobName.ClassifyBatch, { model: 'm', items }));
    expect(new Set(actions())).toEqual(new Set(['image.crash_suspect']));
    expect(counts.get('victim/innocent/m')).toBeUndefined();
    expect(counts.get('victim/innocent/m:coalesced')).toBe(4);
    expect(stored).toEqual([]);
  });

  it('refuses a job that comes back after a lapse for a poison image, before it runs; a first delivery is not read', async () => {
    const { watch } = setup();
    await watch.stalledTooOften(analyze());
    await watch.stalledTooOften(analyze());
    await expect(watch.starting(analyze(1))).rejects.toMatchObject({ code: ErrorCode.ImageCrashedWorker });
    await expect(watch.starting(analyze(0))).resolves.toBeUndefined();
  });

  it('forgets the count when a job back after a lapse runs to its end (a live holder, or a death of another cause)', async () => {
    const { watch, counts, actions } = setup();
    await watch.stalledTooOften(analyze());
    await watch.starting(analyze(1));
    await watch.ended(analyze(1), { result: { state: 'completed', reused: false } });
    expect(counts.size).toBe(0);
    expect(actions()).toContain('image.crash_record_cleared');
  });

  it('forgets it when a fresh job queued with the count (crashCount) runs to its end: a count taken beside another image\'s death', async () => {
    const { watch, counts, actions } = setup();
    await watch.stalledTooOften(analyze());
    const fresh = (crashCount?: number) => job(InferenceJobName.Classify, { tenant: 't', imageHash: 'h', model: 'm', requestId: 'r', ...(crashCount ? { crashCount } : {}) }, 0, 'f');
    await watch.starting(fresh());
    await watch.ended(fresh(), { result: { predictions: [] } });
    expect(counts.size).toBe(1); // an ordinary job: nothing read or written
    await watch.starting(fresh(1));
    await watch.ended(fresh(1), { result: { predictions: [] } });
    expect(counts.size).toBe(0);
    expect(actions()).toContain('image.crash_record_cleared');
  });

  it('forgets it when this worker lost the lock (renewal failed, or refused at the end) and still finished', async () => {
    const { watch, counts } = setup();
    await watch.stalledTooOften(analyze());
    await watch.starting(analyze(0, 'a'));
    watch.locksLapsed(['a']);
    await watch.ended(analyze(0, 'a'), { error: new AppError(ErrorCode.ImageDecodeFailed, 'broken') });
    expect(counts.size).toBe(0);

    await watch.stalledTooOften(analyze());
    await watch.starting(analyze(0, 'b'));
    await watch.ended(analyze(0, 'b'), { result: { state: 'completed' } });
    expect(counts.size).toBe(1); // an ordinary end: nothing read or written
    await watch.lockLostOnFinish('b');
    expect(counts.size).toBe(0);
  });

  it('keeps the count when the run proved nothing (expired bytes, a stored result) or BullMQ recorded the end', async () => {
    const { watch, counts } = setup();
    await watch.stalledTooOften(analyze());
    await watch.starting(analyze(1, 'a'));
    await watch.ended(analyze(1, 'a'), { error: new AppError(ErrorCode.InputExpired, 'gone') });
    await watch.starting(analyze(1, 'b'));
    await watch.ended(analyze(1, 'b'), { result: { state: 'completed', reused: true } });
    await watch.starting(analyze(0, 'c'));
    await watch.ended(analyze(0, 'c'), { result: { state: 'completed' } });
    watch.settled('c');
    await watch.lockLostOnFinish('c');
    expect(counts.size).toBe(1);
  });
});
