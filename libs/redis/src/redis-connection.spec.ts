import { parseEnv } from '@app/config/env.schema';
import { Cluster } from 'ioredis';
import { reconnectDelayMs, RedisConnection } from './redis-connection';

describe('RedisConnection', () => {
  it('makes REDIS_URL connections by default, with the READONLY reconnect', () => {
    const connection = RedisConnection.fromEnv(parseEnv({ REDIS_URL: 'redis://:secret@cache:6380/2' }));
    const options = connection.options({ lazyConnect: true });
    expect(options).toMatchObject({ host: 'cache', port: 6380, db: 2, password: 'secret', lazyConnect: true });
    expect(options.sentinels).toBeUndefined();
    expect(options.reconnectOnError!(new Error("READONLY You can't write against a read only replica."))).toBe(true);
    expect(options.reconnectOnError!(new Error('ERR unknown command'))).toBe(false);
    expect(connection.describe()).toBe('redis://:***@cache:6380/2');
  });

  it('makes every connection through the sentinels when REDIS_SENTINELS is set', () => {
    const connection = RedisConnection.fromEnv(parseEnv({ REDIS_SENTINELS: 's1:26380,[::1]', REDIS_SENTINEL_MASTER: 'queue', REDIS_SENTINEL_PASSWORD: 'sp', REDIS_PASSWORD: 'dp' }));
    const options = connection.options({ maxRetriesPerRequest: 1 });
    expect(options).toMatchObject({ sentinels: [{ host: 's1', port: 26380 }, { host: '::1', port: 26379 }], name: 'queue', role: 'master', sentinelPassword: 'sp', password: 'dp', maxRetriesPerRequest: 1 });
    expect(options.host).toBeUndefined();
    expect(options.reconnectOnError!(new Error('READONLY You can\'t write against a read only replica.'))).toBe(true);
    expect(connection.bullConnection()).toMatchObject({ sentinels: options.sentinels, name: 'queue' });
    expect(connection.describe()).toBe('sentinel "queue" via s1:26380,[::1]:26379');
    expect(connection.describe()).not.toContain('sp');
  });

  it('makes every connection an ioredis Cluster when REDIS_CLUSTER_NODES is set, and BullMQ\'s lazy, for blocking use, closed by close()', async () => {
    const connection = RedisConnection.fromEnv(parseEnv({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, node-b', REDIS_PASSWORD: 'dp' }));
    expect(connection.describe()).toBe('cluster via 10.0.0.1:7000,node-b:6379');
    expect(connection.setting).toBe('REDIS_CLUSTER_NODES');
    const client = connection.client({ lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 }) as unknown as Cluster;
    expect(client).toBeInstanceOf(Cluster);
    expect(client.options).toMatchObject({ lazyConnect: true, enableOfflineQueue: false, redisOptions: { password: 'dp', maxRetriesPerRequest: 1, enableOfflineQueue: false } });
    expect(client.options.redisOptions).not.toHaveProperty('lazyConnect');
    expect(client.options.clusterRetryStrategy!(100, new Error('down'))).toBe(2000);
    const bull = connection.bullConnection({ enableOfflineQueue: false }) as unknown as Cluster;
    expect(bull).toBeInstanceOf(Cluster);
    expect(bull.options).toMatchObject({ lazyConnect: true, enableOfflineQueue: false, redisOptions: { password: 'dp', maxRetriesPerRequest: null } });
    expect(bull.status).toBe('wait');
    await connection.close();
    expect(['disconnecting', 'end']).toContain(bull.status);
    client.disconnect();
  });

  it('reconnects within 2 s whatever the attempt (BullMQ alone would wait up to 20 s)', () => {
    expect([1, 2, 5, 100].map(reconnectDelayMs)).toEqual([200, 400, 1000, 2000]);
  });
});
