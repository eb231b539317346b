import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { AppProcess } from '../support/app-process';
import { freePort } from '../support/free-port';
import { multipart, request } from '../support/http';
import { classifySamples, until } from '../support/load';
import { TestSentinels } from '../support/test-sentinel';

interface Outcome {
  kind: 'classify' | 'analysis';
  sentAt: number;
  ms: number;
  /** 0 when the request failed without an answer (refused connection, or no answer within its timeout). */
  status: number;
  code?: string;
  retryAfter?: string;
  /** classify: the label expected and the one answered. */
  expected?: string;
  label?: string;
  /** analysis: the image's hash. */
  hash?: string;
  error?: string;
}

/**
 * Redis behind Sentinel (a primary and a replica with AOF everysec, three sentinels), two APIs and two workers,
 * a steady load of classifications and analyses; the primary is killed with SIGKILL, then (once the old one is
 * back as a replica) the new primary too. Every request ends in 200/202, or 503 with Retry-After, within the
 * wait limit; every analysis accepted reaches `completed`; processing resumes within 15 s of each kill.
 */
describe('fault: Sentinel failover under load', () => {
  const REQUEST_WAIT_MS = 8000;
  const MODEL = 'mobilenet_v2';
  let sentinels: TestSentinels;
  let storageDir: string;
  const apps: AppProcess[] = [];

  beforeAll(async () => {
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-sentinel-images-'));
    sentinels = await TestSentinels.start();
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await sentinels?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  it('refuses at start what it cannot use: REDIS_URL beside REDIS_SENTINELS, sentinels that do not answer, an unknown master name', async () => {
    const both = await AppProcess.spawn('api', { ...sentinels.env, REDIS_URL: 'redis://127.0.0.1:6390' });
    expect(await both.exitCode()).toBe(2);
    expect(both.logsWith('config.invalid')[0]?.msg).toMatch(/REDIS_URL: is set, and so is REDIS_SENTINELS/);
    const silent = await AppProcess.spawn('worker', { REDIS_SENTINELS: `127.0.0.1:${await freePort()}` });
    expect(await silent.exitCode()).toBe(1);
    expect(silent.logsWith('worker.cannot_start')[0]?.msg).toMatch(/cannot reach Redis through sentinel "mymaster" via 127\.0\.0\.1:\d+ .*REDIS_SENTINELS/);
    const unknown = await AppProcess.spawn('api', { ...sentinels.env, REDIS_SENTINEL_MASTER: 'nobody' });
    expect(await unknown.exitCode()).toBe(1);
    expect(unknown.logsWith('api.cannot_start')[0]?.msg).toMatch(/cannot reach Redis through sentinel "nobody"/);
  });

  it('kill -9 of the primary, twice: no 500, no hang, no accepted analysis lost, processing back within 15 s', async () => {
    const env = { ...sentinels.env, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', REQUEST_WAIT_MS: String(REQUEST_WAIT_MS) };
    const started = await Promise.all([AppProcess.start('api', env), AppProcess.start('api', env), AppProcess.start('worker', env), AppProcess.start('worker', env)]);
    apps.push(...started);
    const [api1, api2] = started;
    const apis = [api1, api2];
    const samples = classifySamples(MODEL);
    // Distinct images, so every analysis is a job of its own (the same image would be answered from its stored result).
    const images = await Promise.all(Array.from({ length: 120 }, () => sharp(randomBytes(48 * 48 * 3), { raw: { width: 48, height: 48, channels: 3 } }).png().toBuffer()));

    const outcomes: Promise<Outcome>[] = [];
    const send = async (outcome: Outcome, call: () => Promise<Response>, read: (body: any) => void): Promise<Outcome> => {
      try {
        const response = await call();
        outcome.status = response.status;
        outcome.retryAfter = response.headers.get('retry-after') ?? undefined;
        const body: any = await response.json().catch(() => undefined);
        outcome.code = body?.error?.code;
        read(body);
      } catch (error) {
        outcome.error = (error as Error).message;
      }
      outcome.ms = Date.now() - outcome.sentAt;
      return outcome;
    };
    const timeout = () => AbortSignal.timeout(REQUEST_WAIT_MS + 10_000);
    let classified = 0;
    let analysed = 0;
    // Open-loop, bounded load: a classification every 200 ms and an analysis every 500 ms, over both APIs.
    const classifyTimer = setInterval(() => {
      const sample = samples[classified % samples.length];
      const api = apis[classified++ % 2];
      const outcome: Outcome = { kind: 'classify', sentAt: Date.now(), ms: 0, status: 0, expected: sample.label };
      const type = sample.name.endsWith('.png') ? 'image/png' : 'image/jpeg';
      outcomes.push(send(outcome, () => fetch(`${api.url}/v1/classify?topk=${sample.topk}`, { method: 'POST', headers: { 'content-type': type }, body: sample.bytes, signal: timeout() }), (body) => (outcome.label = body?.predictions?.[0]?.label)));
    }, 200);
    const analysisTimer = setInterval(() => {
      if (analysed >= images.length) return;
      const api = apis[analysed % 2];
      const bytes = images[analysed++];
      const outcome: Outcome = { kind: 'analysis', sentAt: Date.now(), ms: 0, status: 0 };
      const body = () => multipart({ images: { bytes, filename: 'noise.png', type: 'image/png' }, models: MODEL });
      outcomes.push(send(outcome, () => fetch(`${api.url}/v1/analyses`, { method: 'POST', body: body(), signal: timeout() }), (answer) => (outcome.hash = answer?.images?.[0]?.hash)));
    }, 500);

    const kills: Array<{ at: number; port: number }> = [];
    try {
      await sleep(4000);
      kills.push({ port: await sentinels.killPrimary(), at: Date.now() });
      await sleep(15_000);
      await sentinels.restartAsReplica(kills[0].port);
      await sleep(3000);
      kills.push({ port: await sentinels.killPrimary(), at: Date.now() });
      await sleep(15_000);
    } finally {
      clearInterval(classifyTimer);
      clearInterval(analysisTimer);
    }
    const all = await Promise.all(outcomes);

    // Every request answered, none past the wait limit (plus its own work), none with a 500.
    expect(all.filter((o) => o.status === 0)).toEqual([]);
    expect(all.filter((o) => ![200, 202, 503].includes(o.status))).toEqual([]);
    expect(all.filter((o) => o.status === 503 && !(Number(o.retryAfter) >= 1))).toEqual([]);
    expect(all.filter((o) => o.ms > REQUEST_WAIT_MS + 3000)).toEqual([]);
    expect(all.filter((o) => o.kind === 'classify' && o.status === 200 && o.label !== o.expected)).toEqual([]);

    // Processing resumes: the first classification sent after each kill that was answered 200, within 15 s of the kill.
    const resumedMs = kills.map(({ at }) => {
      const served = all.filter((o) => o.kind === 'classify' && o.status === 200 && o.sentAt >= at).sort((a, b) => a.sentAt + a.ms - (b.sentAt + b.ms))[0];
      return served ? served.sentAt + served.ms - at : Infinity;
    });
    expect(resumedMs.every((ms) => ms < 15_000)).toBe(true);

    // Every analysis accepted (202) reaches completed: a job the failover lost is queued again when its result is asked for.
    const accepted = all.filter((o) => o.kind === 'analysis' && o.status === 202);
    const states = new Map<string, string>();
    await until(
      async () => {
        for (const o of accepted) {
          if (states.get(o.hash!) === 'completed') continue;
          const answer = await request(`${apis[0].url}/v1/images/${o.hash}/results/${MODEL}`);
          states.set(o.hash!, answer.status === 200 ? answer.body.state : `${answer.status} ${answer.body?.state ?? answer.body?.error?.code}`);
        }
        return accepted.every((o) => states.get(o.hash!) === 'completed');
      },
      90_000,
      'every accepted analysis to complete',
      500,
    ).catch(() => undefined);
    const notCompleted = accepted.filter((o) => states.get(o.hash!) !== 'completed').map((o) => `${o.hash}: ${states.get(o.hash!)}`);
    expect(notCompleted).toEqual([]);

    const during = (o: Outcome, i: number) => o.sentAt >= kills[i].at && o.sentAt < kills[i].at + resumedMs[i];
    const vanished = apis.reduce((sum, api) => sum + api.logsWith('job.vanished').length, 0);
    for (const [i, kill] of kills.entries()) {
      const window = all.filter((o) => during(o, i));
      console.log(
        `Sentinel failover ${i + 1} (primary on ${kill.port} killed): processing resumed after ${resumedMs[i]} ms; ` +
          `${window.length} requests sent before that: ${window.filter((o) => o.status === 503).length} × 503 with Retry-After, ` +
          `${window.filter((o) => o.status === 200).length} × 200, ${window.filter((o) => o.status === 202).length} × 202`,
      );
    }
    const count = (kind: Outcome['kind'], status: number) => all.filter((o) => o.kind === kind && o.status === status).length;
    console.log(
      `Sentinel failover totals: ${all.length} requests; classify ${count('classify', 200)} × 200, ${count('classify', 202)} × 202, ${count('classify', 503)} × 503; ` +
        `analyses ${accepted.length} accepted (all completed, 0 lost), ${count('analysis', 503)} × 503; classify jobs that vanished and were queued again: ${vanished}`,
    );
    expect(started.filter((app) => app.exited)).toEqual([]);
  });
});

/** REDIS_PASSWORD and REDIS_SENTINEL_PASSWORD reach every connection: the data nodes and the sentinels all require a password. */
describe('Sentinel with passwords on the data nodes and on the sentinels', () => {
  let sentinels: TestSentinels;
  let storageDir: string;
  const apps: AppProcess[] = [];

  beforeAll(async () => {
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-sentinel-auth-'));
    sentinels = await TestSentinels.start({ data: 'data-secret', sentinel: 'sentinel-secret' });
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await sentinels?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  it('both apps authenticate to both; a wrong data password stops the start with one line', async () => {
    const env = { ...sentinels.env, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1' };
    const started = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]);
    apps.push(...started);
    const [api] = started;
    const [sample] = classifySamples();
    const answer = await request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: sample.bytes });
    expect(`${answer.status} ${answer.body.predictions?.[0]?.label}`).toBe(`200 ${sample.label}`);
    expect((await request(`${api.url}/health/ready`)).status).toBe(200);
    const wrong = await AppProcess.spawn('api', { ...env, REDIS_PASSWORD: 'wrong' });
    expect(await wrong.exitCode()).toBe(1);
    expect(wrong.logsWith('api.cannot_start')[0]?.msg).toMatch(/cannot reach Redis through sentinel "mymaster"/);
    expect(JSON.stringify(wrong.logs)).not.toContain('data-secret');
  });
});
