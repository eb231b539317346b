import { compareStreamIds, unreadEntriesRemovedUpTo } from './stream-ids';

/** XINFO STREAM's reply as ioredis returns it: a flat name/value list. */
const info = (fields: Record<string, unknown>) => Object.entries(fields).flat();

describe('JobWaiter: noticing events removed before they were read', () => {
  it('orders stream ids by time, then sequence; empty first', () => {
    expect(compareStreamIds('1700000000000-5', '1700000000000-12')).toBeLessThan(0);
    expect(compareStreamIds('1700000000001-0', '1700000000000-99')).toBeGreaterThan(0);
    expect(compareStreamIds('5-1', '5-1')).toBe(0);
    expect(compareStreamIds('', '5-1')).toBeLessThan(0);
  });

  it('a reader that keeps up sees no loss: the oldest entry is older than the last one delivered', () => {
    expect(unreadEntriesRemovedUpTo(info({ length: 3, 'last-generated-id': '30-0', 'max-deleted-entry-id': '0-0', 'first-entry': ['10-0', []] }), '30-0')).toBeUndefined();
    expect(unreadEntriesRemovedUpTo(info({ length: 0, 'last-generated-id': '30-0', 'max-deleted-entry-id': '0-0', 'first-entry': null }), '30-0')).toBeUndefined();
  });

  it('trimmed past the reader, trimmed to nothing, or deleted unread: the id up to which entries went', () => {
    expect(unreadEntriesRemovedUpTo(info({ length: 2, 'last-generated-id': '50-0', 'max-deleted-entry-id': '0-0', 'first-entry': ['40-0', []] }), '30-0')).toBe('40-0');
    expect(unreadEntriesRemovedUpTo(info({ length: 0, 'last-generated-id': '50-0', 'max-deleted-entry-id': '0-0', 'first-entry': null }), '30-0')).toBe('50-0');
    expect(unreadEntriesRemovedUpTo(info({ length: 5, 'last-generated-id': '50-0', 'max-deleted-entry-id': '45-0', 'first-entry': ['10-0', []] }), '30-0')).toBe('45-0');
  });

  it('before anything was delivered there is no position to compare with', () => {
    expect(unreadEntriesRemovedUpTo(info({ length: 0, 'last-generated-id': '50-0', 'first-entry': null }), '')).toBeUndefined();
  });
});
