import type { RedisOptions } from 'ioredis';

/**
 * The connection fields a URL carries. A subset of ioredis' RedisOptions that also fits BullMQ's own
 * RedisOptions (since BullMQ 6 it no longer takes ioredis' type, whose retryStrategy may be null).
 */
export type RedisUrlOptions = Required<Pick<RedisOptions, 'host' | 'port' | 'db'>> & Pick<RedisOptions, 'username' | 'password' | 'tls' | 'family'>;

/**
 * Query options a REDIS_URL may carry, in ioredis' own URL form (`redis://host:6379/?db=4&password=…`); each sets
 * the ioredis option of the same name. Any other option is refused by name rather than dropped silently.
 */
const QUERY_OPTIONS = ['db', 'username', 'password', 'family'] as const;

/**
 * ioredis options from a redis:// or rediss:// URL: user and password (percent-decoded; an ACL user or a bare
 * password), host (IPv6 in brackets), port (default 6379), database from the path (`/4`) or `?db=4`, TLS for
 * rediss://, and the query options above. Throws, naming the part, on another scheme, an unknown query option,
 * a bad database number or family, or a value given twice with two different values (say `/2?db=4`).
 */
export function parseRedisUrl(url: string): RedisUrlOptions {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error(`REDIS_URL must be redis:// or rediss://, got ${parsed.protocol}`);
  const query = parsed.searchParams;
  for (const name of new Set(query.keys())) {
    if (!(QUERY_OPTIONS as readonly string[]).includes(name)) {
      throw new Error(`REDIS_URL option "${name}" is not supported (supported: ${QUERY_OPTIONS.join(', ')}); remove it from the URL`);
    }
    if (query.getAll(name).length > 1) throw new Error(`REDIS_URL gives option "${name}" more than once`);
  }
  const pick = (name: string, fromUrl: string | undefined): string | undefined => {
    const fromQuery = query.get(name) ?? undefined;
    if (fromUrl !== undefined && fromQuery !== undefined && fromUrl !== fromQuery) throw new Error(`REDIS_URL gives two different values for ${name} (in the URL and in ?${name}=)`);
    return fromUrl ?? fromQuery;
  };
  const dbText = pick('db', parsed.pathname.length > 1 ? parsed.pathname.slice(1) : undefined) ?? '0';
  const db = /^\d{1,5}$/.test(dbText) ? Number(dbText) : NaN;
  if (!Number.isInteger(db)) throw new Error(`REDIS_URL has an invalid database number: "${dbText}"`);
  const familyText = query.get('family');
  if (familyText !== null && familyText !== '4' && familyText !== '6') throw new Error(`REDIS_URL option family must be 4 or 6, got "${familyText}"`);
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    username: pick('username', parsed.username ? decodeURIComponent(parsed.username) : undefined),
    password: pick('password', parsed.password ? decodeURIComponent(parsed.password) : undefined),
    db,
    ...(familyText ? { family: Number(familyText) } : {}),
    tls: parsed.protocol === 'rediss:' ? {} : undefined,
  };
}
