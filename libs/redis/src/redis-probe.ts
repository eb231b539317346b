import { RedisConnection } from './redis-connection';

/**
 * One connection attempt and a PING to Redis within `timeoutMs` (ms): at `target` (a REDIS_URL) or as the
 * connection says (through Sentinel: the sentinels are asked once each for the primary, which must answer).
 * Resolves with undefined when it answers, or with one sentence naming where it looked (passwords hidden), the
 * reason and the fix. Never retries and never lets ioredis print its "Unhandled error event" traces: a start-up
 * check, not a client.
 */
export async function redisUnreachable(target: string | RedisConnection, timeoutMs = 3000): Promise<string | undefined> {
  const connection = typeof target === 'string' ? RedisConnection.fromUrl(target) : target;
  const client = connection.client({
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    sentinelRetryStrategy: () => null,
    failoverDetector: false,
  });
  // ioredis reports the cause (ECONNREFUSED, ENOTFOUND…) as an 'error' event, then rejects with "Connection is closed".
  let cause: NodeJS.ErrnoException | undefined;
  client.on('error', (error: NodeJS.ErrnoException) => (cause ??= error));
  try {
    await client.connect();
    await client.ping();
    // ioredis selects REDIS_URL's database on connect but goes on without it when Redis refuses (a db beyond the
    // server's `databases`): everything would then land in db 0, beside whatever else lives there. Select it
    // here, where a refusal can stop the start.
    // A node of a Redis Cluster reached as one Redis answers PING, then MOVED for every key of another node's
    // slots (500s, a worker that never gets a job): say so at start. A server that refuses INFO is not judged.
    if (connection.topology.mode !== 'cluster' && /^cluster_enabled:1\b/m.test(await client.info('cluster').catch(() => ''))) {
      return `Redis at ${connection.describe()} is a node of a Redis Cluster (cluster_enabled:1): unset ${connection.setting} and give the cluster's nodes in REDIS_CLUSTER_NODES (QUEUE_PREFIX in braces, the default {iiq})`;
    }
    const db = connection.topology.mode === 'cluster' ? 0 : Number(connection.options().db ?? 0);
    if (db > 0) {
      try {
        await client.select(db);
      } catch (error) {
        return `Redis at ${connection.describe()} has no database ${db} (${(error as Error).message}): use a database number below the server's \`databases\` setting (16 by default) in REDIS_URL (/<db> or ?db=<db>)`;
      }
    }
    return undefined;
  } catch (error) {
    const first = cause ?? (error as NodeJS.ErrnoException);
    const reason = first.code ?? first.message;
    if (connection.topology.mode === 'cluster') {
      return `cannot reach Redis through ${connection.describe()} (${reason}): set ${connection.setting} to nodes of a Redis Cluster whose state is ok (cluster_state:ok in CLUSTER INFO; password: REDIS_PASSWORD)`;
    }
    if (connection.topology.mode !== 'standalone') {
      return `cannot reach Redis through ${connection.describe()} (${reason}): set ${connection.setting} to sentinels that monitor that name and a primary that answers (passwords: REDIS_SENTINEL_PASSWORD, REDIS_PASSWORD)`;
    }
    return (
      `cannot reach Redis at ${connection.describe()} (${reason}): set REDIS_URL to a Redis that answers, ` +
      'or unset it and install redis-server (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) for npm start to use the one at 127.0.0.1:6379 or start one (LOCAL_REDIS_PORT=<port> for one of its own)'
    );
  } finally {
    client.disconnect();
  }
}
