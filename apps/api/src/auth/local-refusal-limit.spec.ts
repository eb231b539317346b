import { LocalRefusalLimit } from './local-refusal-limit';

describe('LocalRefusalLimit', () => {
  it('lets `limit` refusals per address and window through, then says how long until the window ends', () => {
    let now = 1_000_000;
    const limit = new LocalRefusalLimit(3, 60_000, () => now);
    for (let i = 0; i < 3; i++) expect(limit.hit('10.0.0.1')).toBeUndefined();
    expect(limit.hit('10.0.0.1')).toBe(60);
    now += 30_500;
    expect(limit.hit('10.0.0.1')).toBe(30);
    // Another address has its own count.
    expect(limit.hit('10.0.0.2')).toBeUndefined();
    // A new window starts afresh.
    now += 30_000;
    expect(limit.hit('10.0.0.1')).toBeUndefined();
  });

  it('counts nothing with limit 0 (RATE_LIMIT_MAX=0: no rate limit)', () => {
    const limit = new LocalRefusalLimit(0, 60_000);
    for (let i = 0; i < 100; i++) expect(limit.hit('10.0.0.1')).toBeUndefined();
  });
});
