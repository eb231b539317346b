import Redis from 'ioredis';
import { TestRedis } from '../../../test/support/test-redis';
import { closingClient, onConnectionLost } from './connection-end';

describe('onConnectionLost', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await TestRedis.start();
  });
  afterAll(() => redis?.stop());

  it('fires when a real connection ends for good, not when it is closed on purpose', async () => {
    const lost = new Redis(redis.url);
    let fired = 0;
    onConnectionLost(lost, () => fired++);
    await lost.ping();
    lost.disconnect(false); // ended, no reconnection: what the failover left behind
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(fired).toBe(1);

    const closed = new Redis(redis.url);
    let firedOnClose = 0;
    onConnectionLost(closed, () => firedOnClose++);
    await closed.ping();
    closingClient(closed);
    await closed.quit();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(firedOnClose).toBe(0);
  });
});
