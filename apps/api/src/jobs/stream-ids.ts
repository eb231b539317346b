/** Orders two Redis stream ids ("<ms>-<seq>"); '' sorts before every id. Negative, zero or positive. */
export function compareStreamIds(a: string, b: string): number {
  if (!a || !b) return (a ? 1 : 0) - (b ? 1 : 0);
  const [aMs, aSeq] = a.split('-').map(Number);
  const [bMs, bSeq] = b.split('-').map(Number);
  return aMs !== bMs ? aMs - bMs : (aSeq ?? 0) - (bSeq ?? 0);
}

/**
 * From XINFO STREAM's reply (a flat name/value list), the id up to which entries newer than `lastDelivered`
 * were removed before being read, or undefined when none can have been:
 * - the oldest entry left is newer than the last delivered (trimmed past the reader: MAXLEN trimming keeps
 *   EVENTS_MAX_LEN entries, so a reader that keeps up never sees this; false alarms only cost one poll);
 * - the stream is empty but has generated ids past the last delivered (trimmed to nothing);
 * - `max-deleted-entry-id` (Redis 7+, XDEL only) is past the last delivered.
 * Undefined before anything was delivered ('' lastDelivered): there is no position to compare with.
 */
export function unreadEntriesRemovedUpTo(info: unknown[], lastDelivered: string): string | undefined {
  if (!lastDelivered) return undefined;
  const field = (name: string) => {
    const at = info.indexOf(name);
    return at >= 0 ? info[at + 1] : undefined;
  };
  const first = field('first-entry') as [string, unknown] | null | undefined;
  const candidates = [
    Array.isArray(first) ? String(first[0]) : Number(field('length')) === 0 ? String(field('last-generated-id') ?? '') : '',
    String(field('max-deleted-entry-id') ?? ''),
  ].filter((id) => id && compareStreamIds(id, lastDelivered) > 0);
  return candidates.sort(compareStreamIds).pop();
}
