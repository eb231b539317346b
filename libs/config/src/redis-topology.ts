/** A `host:port` pair from a comma list such as REDIS_SENTINELS. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * `host:port` pairs from a comma list (`10.0.0.1:26379, sentinel-b:26379, [::1]:26379`); a missing port is
 * `defaultPort`. Throws, naming `variable` and the entry, on an empty list, an empty entry or a bad port.
 */
export function parseHostPorts(text: string, variable: string, defaultPort: number): HostPort[] {
  const entries = text.split(',').map((entry) => entry.trim());
  if (entries.length === 0 || entries.every((entry) => entry === '')) throw new Error(`${variable} is empty: give a comma list of host:port`);
  return entries.map((entry) => {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+))(?::(\d{1,5}))?$/.exec(entry);
    if (!match) throw new Error(`${variable} has an entry that is not host:port: "${entry}"`);
    const port = match[3] === undefined ? defaultPort : Number(match[3]);
    if (port < 1 || port > 65535) throw new Error(`${variable} has a port out of range in "${entry}"`);
    return { host: match[1] ?? match[2], port };
  });
}

/**
 * Variables that choose how both apps reach Redis. Exactly one way is used: REDIS_URL (one Redis, the default),
 * REDIS_SENTINELS (Sentinel finds the primary) or REDIS_CLUSTER_NODES (a Redis Cluster, found from these seeds).
 * Each mode's own variables are listed so that a setting the chosen mode would not read is refused at start
 * instead of being half-used.
 */
const MODES = [
  { selector: 'REDIS_SENTINELS', variables: ['REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PASSWORD', 'REDIS_PASSWORD'] },
  { selector: 'REDIS_CLUSTER_NODES', variables: ['REDIS_PASSWORD'] },
] as const;

/**
 * Problems with the combination of Redis variables in `source` (the raw environment, empty values already
 * dropped), as `[variable, message]` pairs: REDIS_URL set beside a mode selector, two selectors, or a mode's
 * variable without its selector.
 */
export function redisTopologyProblems(source: Record<string, string | undefined>): Array<[string, string]> {
  const problems: Array<[string, string]> = [];
  const selected = MODES.filter((mode) => source[mode.selector] !== undefined);
  if (selected.length > 1) problems.push([selected[1].selector, `cannot be used together with ${selected[0].selector}: choose one way to reach Redis`]);
  if (selected.length > 0 && source.REDIS_URL !== undefined) {
    problems.push(['REDIS_URL', `is set, and so is ${selected[0].selector}: every connection goes through ${selected[0].selector} then; unset REDIS_URL (data-node credentials go in REDIS_PASSWORD)`]);
  }
  for (const variable of new Set(MODES.flatMap((mode) => mode.variables))) {
    const readers = MODES.filter((mode) => (mode.variables as readonly string[]).includes(variable));
    if (source[variable] === undefined || readers.some((mode) => source[mode.selector] !== undefined)) continue;
    problems.push([variable, `is only read with ${readers.map((mode) => mode.selector).join(' or ')}; unset it (with REDIS_URL, credentials go in the URL)`]);
  }
  return problems;
}
