import { parseHostPorts, redisTopologyProblems } from './redis-topology';

describe('parseHostPorts', () => {
  it('reads host:port lists, IPv6 in brackets, and fills the default port', () => {
    expect(parseHostPorts('10.0.0.1:26380, sentinel-b ,[::1]:26381', 'X', 26379)).toEqual([
      { host: '10.0.0.1', port: 26380 },
      { host: 'sentinel-b', port: 26379 },
      { host: '::1', port: 26381 },
    ]);
  });

  it('names the variable and the entry it cannot read', () => {
    expect(() => parseHostPorts(' , ', 'REDIS_SENTINELS', 26379)).toThrow(/REDIS_SENTINELS is empty/);
    expect(() => parseHostPorts('a:1,b:x', 'REDIS_SENTINELS', 26379)).toThrow(/REDIS_SENTINELS has an entry that is not host:port: "b:x"/);
    expect(() => parseHostPorts('a:0', 'REDIS_SENTINELS', 26379)).toThrow(/port out of range in "a:0"/);
    expect(() => parseHostPorts('redis://a:1', 'REDIS_SENTINELS', 26379)).toThrow(/not host:port/);
  });
});

describe('redisTopologyProblems', () => {
  it('accepts REDIS_URL alone, Sentinel settings alone, or nothing', () => {
    expect(redisTopologyProblems({})).toEqual([]);
    expect(redisTopologyProblems({ REDIS_URL: 'redis://cache' })).toEqual([]);
    expect(redisTopologyProblems({ REDIS_SENTINELS: 'a', REDIS_SENTINEL_MASTER: 'm', REDIS_SENTINEL_PASSWORD: 's', REDIS_PASSWORD: 'p' })).toEqual([]);
  });

  it('refuses REDIS_URL beside REDIS_SENTINELS, and Sentinel settings without REDIS_SENTINELS', () => {
    expect(redisTopologyProblems({ REDIS_URL: 'redis://cache', REDIS_SENTINELS: 'a' }).map(([name]) => name)).toEqual(['REDIS_URL']);
    expect(redisTopologyProblems({ REDIS_SENTINEL_PASSWORD: 's', REDIS_PASSWORD: 'p' }).map(([name]) => name)).toEqual(['REDIS_SENTINEL_PASSWORD', 'REDIS_PASSWORD']);
  });

  it('accepts REDIS_CLUSTER_NODES with REDIS_PASSWORD, and refuses it beside REDIS_URL, REDIS_SENTINELS or Sentinel settings', () => {
    expect(redisTopologyProblems({ REDIS_CLUSTER_NODES: 'a:7000,b:7001', REDIS_PASSWORD: 'p' })).toEqual([]);
    expect(redisTopologyProblems({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_URL: 'redis://cache' })).toEqual([['REDIS_URL', expect.stringMatching(/^is set, and so is REDIS_CLUSTER_NODES/)]]);
    expect(redisTopologyProblems({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_SENTINELS: 's' })).toEqual([['REDIS_CLUSTER_NODES', expect.stringMatching(/cannot be used together with REDIS_SENTINELS/)]]);
    expect(redisTopologyProblems({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_SENTINEL_MASTER: 'm' })).toEqual([['REDIS_SENTINEL_MASTER', expect.stringMatching(/is only read with REDIS_SENTINELS;/)]]);
    expect(redisTopologyProblems({ REDIS_PASSWORD: 'p' })).toEqual([['REDIS_PASSWORD', expect.stringMatching(/is only read with REDIS_SENTINELS or REDIS_CLUSTER_NODES/)]]);
  });
});
