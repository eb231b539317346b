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

describe('redisOptionsFromUrl query options (ioredis URL form)', () => {
  it('honours db, username, password and family', () => {
    expect(redisOptionsFromUrl('redis://cache:6379/?db=4&password=s%26cret&username=app&family=6')).toMatchObject({ host: 'cache', db: 4, username: 'app', password: 's&cret', family: 6 });
  });

  it('accepts the same value twice (path and query) but not two different ones', () => {
    expect(redisOptionsFromUrl('redis://cache/4?db=4').db).toBe(4);
    expect(() => redisOptionsFromUrl('redis://cache/2?db=4')).toThrow(/two different values for db/);
    expect(() => redisOptionsFromUrl('redis://:one@cache/?password=two')).toThrow(/two different values for password/);
  });

  it('refuses what it would otherwise drop, naming it', () => {
    expect(() => redisOptionsFromUrl('redis://cache/?tls=true')).toThrow(/option "tls" is not supported/);
    expect(() => redisOptionsFromUrl('redis://cache/?db=4&db=5')).toThrow(/more than once/);
    expect(() => redisOptionsFromUrl('redis://cache/?db=four')).toThrow(/invalid database number/);
    expect(() => redisOptionsFromUrl('redis://cache/?family=5')).toThrow(/family must be 4 or 6/);
  });
});
