import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppProcess } from '../support/app-process';
import { FailoverLoad } from '../support/failover-load';
import { freePort } from '../support/free-port';
import { request } from '../support/http';
import { classifySamples } from '../support/load';
import { TestSentinels } from '../support/test-sentinel';

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
    const apis = started.slice(0, 2);
    // Open-loop, bounded load over both APIs: a classification every 200 ms and at most 120 analyses, one every 500 ms.
    const load = new FailoverLoad({ apis: apis.map((api) => api.url), model: MODEL, requestWaitMs: REQUEST_WAIT_MS, classifyEveryMs: 200, analysisEveryMs: 500, analyses: 120 });

    const kills: Array<{ at: number; port: number }> = [];
    await load.runDuring(async () => {
      await sleep(4000);
      kills.push({ port: await sentinels.killPrimary(), at: Date.now() });
      await sleep(15_000);
      await sentinels.restartAsReplica(kills[0].port);
      await sleep(3000);
      kills.push({ port: await sentinels.killPrimary(), at: Date.now() });
      await sleep(15_000);
    });

    // Every request answered, none past the wait limit (plus its own work), none with a 500.
    load.expectEveryRequestAnsweredInTime();

    // Processing resumes: the first classification sent after each kill that was answered 200, within 15 s of the kill.
    const resumedMs = kills.map(({ at }) => load.resumedAfterMs(at));
    expect(resumedMs.every((ms) => ms < 15_000)).toBe(true);

    await load.expectAcceptedAnalysesCompleted(apis[0].url);

    const vanished = apis.reduce((sum, api) => sum + api.logsWith('job.vanished').length, 0);
    for (const [i, kill] of kills.entries()) {
      console.log(`Sentinel failover ${i + 1} (primary on ${kill.port} killed): processing resumed after ${resumedMs[i]} ms; ${load.describeWindow(kill.at, resumedMs[i])}`);
    }
    console.log(`Sentinel failover totals: ${load.describeTotals()}; every accepted analysis completed, 0 lost; classify jobs that vanished and were queued again: ${vanished}`);
    // Each process says where it went: its own client's last reconnection names the current primary.
    const primary = await sentinels.primaryPort();
    for (const app of started) expect(app.logsWith('redis.reconnected').at(-1)?.node).toBe(`127.0.0.1:${primary}`);
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
