import Redis from 'ioredis';
import { redisOptionsFromUrl } from './redis-options';

/** The URL with its password replaced by `***`, for messages and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

/**
 * One connection attempt and a PING to the Redis at `url`, within `timeoutMs` (ms). Resolves with undefined
 * when it answers, or with one sentence naming the URL (password hidden), the reason and the fix. Never
 * retries and never lets ioredis print its "Unhandled error event" traces: a start-up check, not a client.
 */
export async function redisUnreachable(url: string, timeoutMs = 3000): Promise<string | undefined> {
  const client = new Redis({
    ...redisOptionsFromUrl(url),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // ioredis reports the cause (ECONNREFUSED, ENOTFOUND…) as an 'error' event, then rejects with "Connection is closed".
  let cause: NodeJS.ErrnoException | undefined;
  client.on('error', (error: NodeJS.ErrnoException) => (cause ??= error));
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (error) {
    const first = cause ?? (error as NodeJS.ErrnoException);
    const reason = first.code ?? first.message;
    return (
      `cannot reach Redis at ${redactRedisUrl(url)} (${reason}): set REDIS_URL to a Redis that answers, ` +
      'or unset it and install redis-server (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) for npm start to run one'
    );
  } finally {
    client.disconnect();
  }
}
