import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { HttpResult, multipart, request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';
import { TestStack } from '../support/test-stack';

/**
 * Redis replies that mean "not now" reach the client as 503 SERVICE_UNAVAILABLE with Retry-After, on every route
 * that writes: produced here for real with OOM (a full Redis under noeviction), READONLY (the API pointed at a
 * replica), BUSY (a long script past busy-reply-threshold) and MASTERDOWN (a replica without its primary).
 * LOADING, TRYAGAIN and CLUSTERDOWN need a big dataset or a cluster: libs/redis/src/try-later.spec.ts covers them.
 * A Redis that answers nothing at all (SIGSTOP) is cut off by REDIS_COMMAND_TIMEOUT_MS. NOAUTH / WRONGPASS (the
 * password changed under the running service) is the same 503, reported as refused credentials.
 */
describe('fault: Redis says "try again later"', () => {
  const stack = new TestStack();
  const castle = fixture('castle_image.jpg');
  const startApi = (redis: TestRedis) => stack.start('api', { REQUEST_WAIT_MS: '1000' }, redis);

  /** Every writing route once: a classification, an analysis, a face search. */
  const writes = (api: AppProcess): Promise<HttpResult[]> => {
    const analysis = multipart({ models: 'mobilenet_v2' });
    analysis.append('images', new Blob([castle]), 'castle_image.jpg');
    return Promise.all([
      request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle }),
      request(`${api.url}/v1/analyses`, { method: 'POST', body: analysis }),
      request(`${api.url}/v1/faces`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('face_obama_1.jpg') }),
    ]);
  };

  /** Every answer a 503 with Retry-After, at least one naming the cause (after READONLY the connection is renewed, and the others may find it reconnecting). */
  const expectTryLater = (answers: HttpResult[], reason: RegExp) => {
    for (const answer of answers) {
      expect(`${answer.status} ${answer.body?.error?.code}`).toBe('503 SERVICE_UNAVAILABLE');
      expect(answer.body.error.message).toMatch(/^the queue store \(Redis\) /);
      expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    expect(answers.map((answer) => answer.body.error.message).join('\n')).toMatch(reason);
  };

  // Not even for the 503s: each is one warn line (the outage has its own warnings), not an error line per request.
  const noErrorLines = (api: AppProcess) => {
    expect(api.logs.filter((line) => line.level === 'error' && line.action === 'http.error')).toEqual([]);
    expect(api.logs.filter((line) => line.action === 'http.error' && line.status === 503).every((line) => line.level === 'warn')).toBe(true);
  };

  afterAll(() => stack.stop());

  it('OOM: a full Redis under noeviction (readiness stays up: workers still announce themselves)', async () => {
    const redis = await stack.startRedis();
    const client = stack.client(redis);
    const api = await stack.start('api', { REQUEST_WAIT_MS: '1000', ADMIN_PASSWORD: 'admin-secret' }, redis);
    await stack.start('worker', { WORKER_HEARTBEAT_MS: '500' }, redis);
    // Keys of our own, then a cap 1 MB below what is used: Redis is over its limit and stays there.
    for (let i = 0; i < 32; i++) await client.set(`filler:${i}`, Buffer.alloc(64 * 1024));
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
    await client.config('SET', 'maxmemory', String(used - 1024 * 1024));
    await expect(client.set('one-more', 'x')).rejects.toThrow(/^OOM/);
    // The dashboard's login count (a Fastify scope outside Nest's exception filter) says the same.
    const admin = request(`${api.url}/admin/queues`, { headers: { authorization: `Basic ${Buffer.from('admin:admin-secret').toString('base64')}` } });
    const adminAnswer = await admin;
    expectTryLater([...(await writes(api)), adminAnswer], /out of memory/);
    noErrorLines(api);
    // Three heartbeat lifetimes later the worker is still seen: the API stays in service and answers 503s.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const ready = await request(`${api.url}/health/ready`);
    expect(ready.status).toBe(200);
    expect(ready.body.info.workers.count).toBe(1);
  });

  it('READONLY: the API pointed at a replica (as right after a failover)', async () => {
    const primary = await stack.startRedis();
    const replica = await stack.startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const api = await startApi(replica);
    expectTryLater(await writes(api), /read-only replica/);
    noErrorLines(api);
  });

  it('MASTERDOWN: a replica that lost its primary and serves no stale data', async () => {
    const primary = await stack.startRedis();
    const replica = await stack.startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port), '--replica-serve-stale-data', 'no'] });
    const watcher = stack.client(replica);
    await until(async () => /master_link_status:up/.test(await watcher.info('replication')), 10_000, 'the replica to sync');
    // Started while the replica has its primary (the start-up check pings Redis), then the primary goes.
    const api = await startApi(replica);
    await primary.stop();
    await until(async () => /master_link_status:down/.test(await watcher.info('replication')), 10_000, 'the replica to lose its primary');
    expectTryLater(await writes(api), /lost its primary/);
    noErrorLines(api);
  });

  it('BUSY: a script running past busy-reply-threshold', async () => {
    const redis = await stack.startRedis({ args: ['--busy-reply-threshold', '100'] });
    const api = await startApi(redis);
    const blocker = stack.client(redis);
    // Spins for 3 s on Redis' own clock, then ends by itself (nothing to kill).
    const spinning = blocker.eval("local stop = tonumber(redis.call('TIME')[1]) + 3 while tonumber(redis.call('TIME')[1]) < stop do end return 1", 0);
    // Until Redis says BUSY to others (past the 100 ms threshold).
    const probe = stack.client(redis);
    await until(() => probe.ping().then(() => false, (error: Error) => /^BUSY/.test(error.message)), 10_000, 'the script to hold Redis');
    const answers = await writes(api);
    await spinning;
    expectTryLater(answers, /busy running a script/);
    noErrorLines(api);
  });

  it('NOAUTH / WRONGPASS: a password changed under running APIs is reported as refused credentials, not "unreachable"', async () => {
    const redis = await stack.startRedis();
    const admin = stack.client(redis);
    // One API logs in as a user of its own, the other as the default user without a password.
    await admin.acl('SETUSER', 'iiq', 'on', '>first-secret', '~*', '&*', '+@all');
    const [asUser, withoutPassword] = await Promise.all([
      stack.start('api', { REQUEST_WAIT_MS: '1000', REDIS_URL: `redis://iiq:first-secret@127.0.0.1:${redis.port}` }, redis),
      startApi(redis),
    ]);
    // Live changes (open connections stay logged in), then every other connection is dropped and reconnects.
    await admin.acl('SETUSER', 'iiq', 'resetpass', '>second-secret');
    await admin.config('SET', 'requirepass', 'admin-secret');
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    for (const [api, reply] of [[asUser, 'WRONGPASS'], [withoutPassword, 'NOAUTH']] as const) {
      const logged = await api.waitForLog((line) => line.action === 'redis.auth_failed');
      expect(logged).toMatchObject({ level: 'error', err: { message: expect.stringMatching(new RegExp(`^${reply} `)) } });
      expect(logged.msg).toMatch(/credentials[\s\S]*REDIS_URL/);
      const answers = await writes(api);
      expectTryLater(answers, /refuses the service's credentials \(authentication failed\)/);
      expect(answers.map((answer) => `${answer.headers.get('retry-after')} ${answer.body.error.message}`)).toEqual(answers.map(() => expect.stringMatching(/^10 .*authentication failed/)));
      const ready = await request(`${api.url}/health/ready`);
      expect(`${ready.status} ${ready.headers.get('retry-after')} ${ready.body.error?.redis?.message}`).toMatch(/^503 10 .*authentication failed/);
      expect(api.logs.filter((line) => JSON.stringify(line).includes('unreachable'))).toEqual([]);
      noErrorLines(api);
    }
  });

  it('a frozen Redis (SIGSTOP: connections stay open, nothing answers): 503 + Retry-After after REDIS_COMMAND_TIMEOUT_MS, served again after SIGCONT', async () => {
    const redis = await stack.startRedis();
    const api = await stack.start('api', { REQUEST_WAIT_MS: '1000', REDIS_COMMAND_TIMEOUT_MS: '1500' }, redis);
    await stack.start('worker', {}, redis);
    const classify = () => request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle });
    expect((await classify()).status).toBe(200);
    process.kill(redis.pid, 'SIGSTOP');
    let answers: HttpResult[];
    let tookMs: number;
    try {
      const started = Date.now();
      answers = await writes(api);
      tookMs = Date.now() - started;
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    expectTryLater(answers, /unreachable/);
    // Not held until the kernel drops the sockets (without the timeout these waited 25 s and more).
    expect(tookMs).toBeLessThan(12_000);
    await until(async () => (await classify()).status === 200, 30_000, 'a classification served again after SIGCONT');
    noErrorLines(api);
  });

  it('a frozen Redis: a new request gets 503 after REDIS_COMMAND_TIMEOUT_MS, one already waiting for its queued job waits REQUEST_WAIT_MS and gets 202 (as the README says)', async () => {
    const redis = await stack.startRedis();
    // No worker: the first request's job stays queued and the request waits for it.
    const api = await stack.start('api', { REQUEST_WAIT_MS: '6000', REDIS_COMMAND_TIMEOUT_MS: '1500' }, redis);
    const timed = async (send: () => Promise<HttpResult>) => {
      const started = Date.now();
      const answer = await send();
      return { status: answer.status, code: answer.body?.error?.code, ms: Date.now() - started };
    };
    const classify = () => request(`${api.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle });
    const waiting = timed(classify);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    process.kill(redis.pid, 'SIGSTOP');
    let answers: Array<{ status: number; code?: string; ms: number }>;
    try {
      answers = await Promise.all([waiting, timed(classify)]);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    const [queuedBefore, newOne] = answers;
    expect(newOne).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE' });
    expect(newOne.ms).toBeGreaterThanOrEqual(1400);
    expect(newOne.ms).toBeLessThan(4000);
    expect(queuedBefore.status).toBe(202);
    expect(queuedBefore.ms).toBeGreaterThanOrEqual(5900);
  });

  it('a frozen Redis under an open event stream: the stream ends with an error event, and the API logs why with the request id', async () => {
    const redis = await stack.startRedis();
    // No worker: the analysis stays pending, so the stream waits on Redis.
    const api = await stack.start('api', { REDIS_COMMAND_TIMEOUT_MS: '1500' }, redis);
    const analysis = multipart({ models: 'mobilenet_v2' });
    analysis.append('images', new Blob([castle]), 'castle_image.jpg');
    const accepted = await request(`${api.url}/v1/analyses`, { method: 'POST', body: analysis });
    expect(accepted.status).toBe(202);
    const stream = await fetch(`${api.url}/v1/images/${accepted.body.images[0].hash}/events`);
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read(); // ': stream open'
    process.kill(redis.pid, 'SIGSTOP');
    let text = '';
    try {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += Buffer.from(chunk.value).toString();
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    expect(text).toMatch(/^event: error$/m);
    // What a 503 would have said: Redis unreachable (past REDIS_COMMAND_TIMEOUT_MS), try again in 2 s.
    expect(text).toMatch(/^retry: 2000$/m);
    expect(JSON.parse(/^data: (.*)$/m.exec(text.slice(text.indexOf('event: error')))![1])).toMatchObject({ code: 'SERVICE_UNAVAILABLE', retryAfterSeconds: 2, message: expect.stringMatching(/unreachable/) });
    // The log line may trail the stream's end by a moment (it crosses the process' stdout).
    const logged = await api.waitForLog((line) => line.action === 'image.events_broken');
    expect(logged).toMatchObject({ service: 'api', requestId: stream.headers.get('x-request-id'), tenant: 'default' });
  });
});
