import Redis from 'ioredis';
import { asTenantId, RedisKeys } from '@app/contracts';
import { TestRedis } from '../../../test/support/test-redis';
import { ImageLocks } from './image-lock';

describe('ImageLocks', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await TestRedis.start();
  });
  afterAll(() => redis?.stop());

  it('a lock SET that timed out (REDIS_COMMAND_TIMEOUT_MS) and ran later is released, not left held for its expiry', async () => {
    const keys = new RedisKeys('iiq');
    const tenant = asTenantId('alice');
    const hash = 'a'.repeat(64);
    const key = keys.tenant(tenant).imageLock(hash);
    const admin = new Redis(redis.url);
    const client = new Redis(redis.url, { commandTimeout: 100 });
    try {
      await client.ping();
      // Redis holds every write for 400 ms: the SET times out on the client, then runs when the pause ends.
      await admin.client('PAUSE', 400, 'WRITE');
      let ran = false;
      await expect(
        new ImageLocks(client, keys).withLock(tenant, hash, async () => {
          ran = true;
        }),
      ).rejects.toThrow(/Command timed out/);
      expect(ran).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(await admin.exists(key)).toBe(0);
      // And the image can be locked at once.
      await new ImageLocks(admin, keys).withLock(tenant, hash, async () => expect(await admin.exists(key)).toBe(1));
    } finally {
      client.disconnect();
      admin.disconnect();
    }
  });

  it('evenWhenFull takes the lock in a full Redis (OOM under noeviction), where a plain SET NX is refused', async () => {
    const keys = new RedisKeys('iiq');
    const tenant = asTenantId('alice');
    const hash = 'b'.repeat(64);
    const key = keys.tenant(tenant).imageLock(hash);
    const admin = new Redis(redis.url);
    try {
      await admin.set('filler', Buffer.alloc(256 * 1024));
      const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await admin.config('SET', 'maxmemory', String(used - 128 * 1024));
      const locks = new ImageLocks(admin, keys);
      await expect(locks.withLock(tenant, hash, async () => undefined)).rejects.toThrow(/^OOM/);
      let held = 0;
      await locks.withLock(tenant, hash, async () => (held = await admin.exists(key)), { evenWhenFull: true });
      expect(held).toBe(1);
      expect(await admin.exists(key)).toBe(0);
    } finally {
      await admin.config('SET', 'maxmemory', '0');
      await admin.del('filler');
      admin.disconnect();
    }
  });
});
