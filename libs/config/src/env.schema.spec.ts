import { parseEnv } from './env.schema';

describe('parseEnv', () => {
  it('fills documented defaults', () => {
    const env = parseEnv({});
    expect(env.PORT).toBe(3000);
    expect(env.REDIS_URL).toBe('redis://127.0.0.1:6379');
    expect(env.MAX_IMAGE_BYTES).toBe(10 * 1024 * 1024);
    expect(env.REQUEST_WAIT_MS).toBe(30_000);
    expect(env.QUEUE_EVENTS_ENABLED).toBe(true);
    expect(env.MODELS_DIR).toBe('models');
    expect(env.API_HEAP_GROWING_PERCENT).toBe(100);
  });

  it('takes API_HEAP_GROWING_PERCENT from 0 (V8 decides) to 1000, nothing else', () => {
    expect(parseEnv({ API_HEAP_GROWING_PERCENT: '0' }).API_HEAP_GROWING_PERCENT).toBe(0);
    expect(() => parseEnv({ API_HEAP_GROWING_PERCENT: '-5' })).toThrow(/API_HEAP_GROWING_PERCENT/);
    expect(() => parseEnv({ API_HEAP_GROWING_PERCENT: 'lots' })).toThrow(/API_HEAP_GROWING_PERCENT/);
  });

  it('coerces strings and treats empty values as unset', () => {
    const env = parseEnv({ PORT: '8080', QUEUE_EVENTS_ENABLED: 'false', LOG_LEVEL: '' });
    expect(env.PORT).toBe(8080);
    expect(env.QUEUE_EVENTS_ENABLED).toBe(false);
    expect(env.LOG_LEVEL).toBe('info');
  });

  it('puts the worker port beside the API port unless set, so `PORT=3001 npm start` cannot collide with itself', () => {
    expect(parseEnv({}).WORKER_HTTP_PORT).toBe(3001);
    expect(parseEnv({ PORT: '3001' }).WORKER_HTTP_PORT).toBe(3002);
    expect(parseEnv({ PORT: '0' }).WORKER_HTTP_PORT).toBe(0);
    expect(parseEnv({ PORT: '65535' }).WORKER_HTTP_PORT).toBe(0);
    expect(parseEnv({ PORT: '3001', WORKER_HTTP_PORT: '9100' }).WORKER_HTTP_PORT).toBe(9100);
    expect(() => parseEnv({ WORKER_HTTP_PORT: '70000' })).toThrow(/WORKER_HTTP_PORT/);
  });

  it('takes QUEUE_PREFIX as a name or a Redis Cluster hash tag, braced by default, and refuses half a tag', () => {
    expect(parseEnv({}).QUEUE_PREFIX).toBe('{iiq}');
    expect(parseEnv({ QUEUE_PREFIX: 'iiq' }).QUEUE_PREFIX).toBe('iiq');
    expect(parseEnv({ QUEUE_PREFIX: '{acme_1}' }).QUEUE_PREFIX).toBe('{acme_1}');
    for (const bad of ['{iiq', 'iiq}', '{a}b', '{}', 'a:b']) expect(() => parseEnv({ QUEUE_PREFIX: bad })).toThrow(/QUEUE_PREFIX/);
  });

  it('reads REDIS_CLUSTER_NODES, refuses it beside REDIS_URL, and on a QUEUE_PREFIX without braces', () => {
    expect(parseEnv({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, node-b', REDIS_PASSWORD: 'p' }).REDIS_CLUSTER_NODES).toBe('10.0.0.1:7000, node-b');
    expect(() => parseEnv({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_URL: 'redis://cache:6379' })).toThrow(/REDIS_URL: is set, and so is REDIS_CLUSTER_NODES/);
    expect(() => parseEnv({ REDIS_CLUSTER_NODES: 'a:7000', QUEUE_PREFIX: 'iiq' })).toThrow(/QUEUE_PREFIX: "iiq" has no braces, and REDIS_CLUSTER_NODES is set.*"\{iiq\}"/);
    expect(() => parseEnv({ REDIS_CLUSTER_NODES: 'redis://a:7000' })).toThrow(/REDIS_CLUSTER_NODES: .*not host:port/);
  });

  it('names every bad variable in one error', () => {
    expect(() => parseEnv({ PORT: 'eighty', REDIS_URL: 'not a url', MAX_IMAGE_BYTES: '-1' })).toThrow(
      /PORT[\s\S]*REDIS_URL|REDIS_URL[\s\S]*PORT/,
    );
    expect(() => parseEnv({ MAX_IMAGE_BYTES: '-1' })).toThrow(/MAX_IMAGE_BYTES/);
  });

  it('documents the HTTP limits and the eviction guard, and refuses limits that contradict each other', () => {
    const env = parseEnv({});
    expect([env.HTTP_HEADERS_TIMEOUT_MS, env.HTTP_REQUEST_TIMEOUT_MS, env.HTTP_IDLE_TIMEOUT_MS, env.HTTP_KEEP_ALIVE_TIMEOUT_MS]).toEqual([60_000, 300_000, 60_000, 72_000]);
    expect(env.REDIS_ALLOW_EVICTION).toBe(false);
    expect(() => parseEnv({ HTTP_HEADERS_TIMEOUT_MS: '5000', HTTP_REQUEST_TIMEOUT_MS: '1000' })).toThrow(/HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS/);
    expect(() => parseEnv({ HTTP_IDLE_TIMEOUT_MS: '5000' })).toThrow(/HTTP_IDLE_TIMEOUT_MS: must be longer than UPLOAD_BUDGET_WAIT_MS/);
    expect(() => parseEnv({ REDIS_URL: 'redis://cache/?timeout=5' })).toThrow(/REDIS_URL: .*"timeout" is not supported/);
  });

  it('reaches Redis one way only: Sentinel settings beside REDIS_URL are refused, not half-used', () => {
    const env = parseEnv({ REDIS_SENTINELS: 's1:26379, s2', REDIS_SENTINEL_MASTER: 'queue', REDIS_PASSWORD: 'data' });
    expect([env.REDIS_SENTINELS, env.REDIS_SENTINEL_MASTER, env.REDIS_PASSWORD]).toEqual(['s1:26379, s2', 'queue', 'data']);
    expect(parseEnv({ REDIS_SENTINELS: 's1' }).REDIS_SENTINEL_MASTER).toBe('mymaster');
    expect(() => parseEnv({ REDIS_SENTINELS: 's1:26379', REDIS_URL: 'redis://cache:6379' })).toThrow(/REDIS_URL: is set, and so is REDIS_SENTINELS.*unset REDIS_URL/);
    expect(() => parseEnv({ REDIS_PASSWORD: 'data' })).toThrow(/REDIS_PASSWORD: is only read with REDIS_SENTINELS/);
    expect(() => parseEnv({ REDIS_SENTINEL_MASTER: 'queue', REDIS_URL: 'redis://cache:6379' })).toThrow(/REDIS_SENTINEL_MASTER: is only read with REDIS_SENTINELS/);
    expect(() => parseEnv({ REDIS_SENTINELS: 's1:99999' })).toThrow(/REDIS_SENTINELS: .*port out of range/);
    expect(() => parseEnv({ REDIS_SENTINELS: 's1:26379,,s2' })).toThrow(/REDIS_SENTINELS: .*not host:port/);
  });
});
