import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppProcess } from '../support/app-process';
import { FailoverLoad } from '../support/failover-load';
import { TestCluster } from '../support/test-cluster';

/**
 * A Redis Cluster of three primaries with one replica each, an API and a worker with REDIS_CLUSTER_NODES, a steady
 * load of classifications and analyses; the primary that holds the queue's slot (`{iiq}`) is killed with SIGKILL
 * and its replica takes over (cluster-node-timeout 2 s). Every request ends in 200/202, or 503 with Retry-After,
 * within the wait limit; every analysis accepted reaches `completed`; processing resumes within 15 s.
 */
describe('fault: Redis Cluster failover of the queue’s primary under load', () => {
  const REQUEST_WAIT_MS = 8000;
  const MODEL = 'mobilenet_v2';
  let cluster: TestCluster;
  let storageDir: string;
  const apps: AppProcess[] = [];

  beforeAll(async () => {
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-cluster-failover-'));
    cluster = await TestCluster.start(3, 1);
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await cluster?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  it('kill -9 of the primary holding {iiq}: no 500, no hang, no accepted analysis lost, processing back within 15 s', async () => {
    const env = { REDIS_CLUSTER_NODES: cluster.nodes, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', REQUEST_WAIT_MS: String(REQUEST_WAIT_MS) };
    const started = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]);
    apps.push(...started);
    const [api, worker] = started;
    // Open-loop, bounded load: a classification every 250 ms and at most 60 analyses, one every 600 ms.
    const load = new FailoverLoad({ apis: [api.url], model: MODEL, requestWaitMs: REQUEST_WAIT_MS, classifyEveryMs: 250, analysisEveryMs: 600, analyses: 60 });

    let killedAt = 0;
    let killedPort = 0;
    await load.runDuring(async () => {
      await sleep(4000);
      killedPort = await cluster.primaryOf('{iiq}');
      await cluster.kill(killedPort);
      killedAt = Date.now();
      await sleep(20_000);
    });
    const promoted = await cluster.primaryOf('{iiq}');

    const resumedMs = load.resumedAfterMs(killedAt);
    console.log(
      `Cluster failover (primary of {iiq} on ${killedPort} killed, ${promoted} promoted): processing resumed after ${resumedMs} ms; ` +
        `${load.describeWindow(killedAt, resumedMs)}. Totals: ${load.describeTotals()}`,
    );

    expect(promoted).not.toBe(killedPort);
    load.expectEveryRequestAnsweredInTime();
    expect(resumedMs).toBeLessThan(15_000);
    await load.expectAcceptedAnalysesCompleted(api.url);
    expect([api, worker].filter((app) => app.exited)).toEqual([]);
  });
});
