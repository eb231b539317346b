/** A Redis stream entry as ioredis returns it from XRANGE / XREVRANGE: [id, [field, value, field, value, …]]. */
export type StreamEntry = [string, string[]];

/**
 * The ids of the entries of BullMQ's event stream whose values name one of `jobIds` (an event carries its job's
 * id as the `jobId` field's value). Used to remove what an erased image's jobs left in the stream.
 */
export function entriesNamingJobs(entries: StreamEntry[], jobIds: ReadonlySet<string>): string[] {
  return entries.filter(([, fields]) => fields.some((field, i) => i % 2 === 1 && jobIds.has(field))).map(([id]) => id);
}
