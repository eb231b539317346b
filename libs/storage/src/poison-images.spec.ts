import Redis from 'ioredis';
import { asTenantId, RedisKeys } from '@app/contracts';
import { TestRedis } from '../../../test/support/test-redis';
import { PoisonImages } from './poison-images';

describe('PoisonImages', () => {
  let server: TestRedis;
  let redis: Redis;
  beforeAll(async () => {
    server = await TestRedis.start();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });
  const keys = new RedisKeys('iiq');
  const subject = (imageHash: string) => ({ tenant: asTenantId('bob'), imageHash, model: 'mobilenet_v2' });

  it('counts the stalled-limit failures of one incident once: copies of an image on a worker that froze twice do not condemn it', async () => {
    // Two jobs of the same image, lapsed together (one frozen or killed worker held both), fail at the limit together.
    const poison = new PoisonImages(redis, keys, 2, 60, 60_000);
    expect(await poison.countCrash(subject('a'.repeat(64)))).toBe(1);
    expect(await poison.countCrash(subject('a'.repeat(64)))).toBe(0);
    expect(await poison.crashes(subject('a'.repeat(64)))).toBe(1);
    expect(await poison.isPoison(subject('a'.repeat(64)))).toBe(false);
    // The coalesced field (suspects) is counted per incident the same way, and apart from the image's own.
    expect(await poison.countCrash(subject('a'.repeat(64)), true)).toBe(1);
    expect((await poison.verdict(subject('a'.repeat(64)))).suspect).toBe(true);
  });

  it('counts failures of separate incidents (past the window) each: a poison image is still condemned', async () => {
    const poison = new PoisonImages(redis, keys, 2, 60, 0);
    expect(await poison.countCrash(subject('b'.repeat(64)))).toBe(1);
    expect(await poison.countCrash(subject('b'.repeat(64)))).toBe(2);
    expect(await poison.isPoison(subject('b'.repeat(64)))).toBe(true);
    expect(await redis.ttl(keys.tenant(asTenantId('bob')).imageCrashes('b'.repeat(64)))).toBeGreaterThan(0);
  });
});
