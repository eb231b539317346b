import { request } from '../support/http';
import { until } from '../support/load';
import { TestStack } from '../support/test-stack';

/**
 * A Redis that became a read-only replica under the worker (a failover behind a fixed address, an operator's
 * REPLICAOF) still answers reads, so a readiness check that only reads would stay green while the worker cannot
 * write a heartbeat or a result. Readiness reports the failed heartbeat and recovers with the next one written.
 */
describe('fault: Redis turned into a read-only replica under the worker', () => {
  const stack = new TestStack();
  afterAll(() => stack.stop());

  it('worker readiness goes down while heartbeats cannot be written, naming why, and back up once they can', async () => {
    const redis = await stack.startRedis();
    const primary = await stack.startRedis();
    const worker = await stack.start('worker', { WORKER_HEARTBEAT_MS: '500' }, redis);
    const port = (await worker.waitForLog((line) => line.action === 'worker.http_listening')).port;
    const ready = () => request(`http://127.0.0.1:${port}/health/ready`);
    expect((await ready()).status).toBe(200);

    const client = stack.client(redis);
    await client.replicaof('127.0.0.1', String(primary.port));
    await until(async () => (await ready()).status === 503, 10_000, 'readiness to go down');
    const answer = await ready();
    expect(answer.body.info.heartbeat.status).toBe('down');
    expect(answer.body.info.heartbeat.message).toMatch(/READONLY/);

    await client.replicaof('NO', 'ONE');
    await until(async () => (await ready()).status === 200, 10_000, 'readiness to come back');
    await worker.stop();
  });
});
