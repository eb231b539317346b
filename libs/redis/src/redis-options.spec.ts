import { redisOptionsFromUrl } from './redis-options';

describe('redisOptionsFromUrl', () => {
  it('reads host, port, credentials and db', () => {
    expect(redisOptionsFromUrl('redis://user:p%40ss@cache.internal:6380/2')).toMatchObject({
      host: 'cache.internal',
      port: 6380,
      username: 'user',
      password: 'p@ss',
      db: 2,
      tls: undefined,
    });
  });

  it('defaults the port, handles IPv6 and TLS', () => {
    expect(redisOptionsFromUrl('rediss://[::1]')).toMatchObject({ host: '::1', port: 6379, db: 0, tls: {} });
  });

  it('refuses other schemes', () => {
    expect(() => redisOptionsFromUrl('http://127.0.0.1:6379')).toThrow(/redis:\/\//);
  });
});
