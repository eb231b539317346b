import { connect, createServer } from 'node:net';
import { EventEmitter } from 'node:events';
import { redisAuthFailed, redisOutOfMemory, redisTryLater, trackAuthFailures } from './try-later';

/** A loopback port nobody listens on (bound, then closed): connecting to it is refused. */
async function refusingPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Replies as Redis 7 words them (directly, and from inside a script or a transaction) and ioredis' own errors. */
const replyError = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });

describe('redisTryLater', () => {
  it.each([
    ["OOM command not allowed when used memory > 'maxmemory'.", 'is out of memory'],
    ["OOM command not allowed when used memory > 'maxmemory'. script: 8f2e, on @user_script:3.", 'is out of memory'],
    ['LOADING Redis is loading the dataset in memory', 'is loading'],
    ['BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.', 'is busy'],
    ["READONLY You can't write against a read only replica.", 'read-only replica'],
    ["MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", 'lost its primary'],
    ['TRYAGAIN Multiple keys request during rehashing of slot', 'cluster resharding'],
    ['CLUSTERDOWN The cluster is down', 'cluster is down'],
    ['MISCONF Redis is configured to save RDB snapshots, but it is currently not able to persist on disk.', 'snapshot failed'],
    ['NOREPLICAS Not enough good replicas to write.', 'too few replicas'],
    ['ERR Error running script (call to f_1): @user_script:1: -READONLY You can\'t write against a read only replica.', 'read-only replica'],
  ])('%s', (message, reason) => {
    const verdict = redisTryLater(replyError(message));
    expect(verdict?.reason).toContain(reason);
    expect(verdict?.retryAfterSeconds).toBeGreaterThan(0);
  });

  it('judges a refused transaction by the errors of its commands', () => {
    const execAbort = Object.assign(replyError('EXECABORT Transaction discarded because of previous errors.'), { previousErrors: [replyError("OOM command not allowed when used memory > 'maxmemory'.")] });
    expect(redisTryLater(execAbort)?.reason).toBe('is out of memory');
  });

  it('counts a lost connection as "try later"', () => {
    expect(redisTryLater(new Error('Connection is closed.'))?.reason).toBe('is unreachable');
    expect(redisTryLater(Object.assign(new Error('Reached the max retries per request limit (which is 1).'), { name: 'MaxRetriesPerRequestError' }))?.reason).toBe('is unreachable');
    expect(redisTryLater(new Error("Stream isn't writeable and enableOfflineQueue options is false"))?.reason).toBe('is unreachable');
    expect(redisTryLater(new Error('connect ECONNREFUSED 127.0.0.1:6379'))?.reason).toBe('is unreachable');
  });

  it("counts the connection errors a Redis outage produces in a BullMQ Worker, whatever their wording, as \"try later\"", async () => {
    // Node's own, for a host name with two addresses that both refuse (as `localhost` is ::1 and 127.0.0.1): an
    // AggregateError with an empty message, the first attempt's code, and each attempt in `errors`.
    const port = await refusingPort();
    const refused = await new Promise<Error>((resolve) => {
      const socket = connect({ host: 'two-addresses', port, autoSelectFamily: true, lookup: ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => (options.all ? callback(null, [{ address: '::1', family: 6 }, { address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4))) as never });
      socket.on('error', resolve);
    });
    expect(refused.name).toBe('AggregateError');
    expect(refused.message).toBe('');
    expect(redisTryLater(refused)?.reason).toBe('is unreachable');
    // A name that does not resolve while its container is down: by code (the message may say only the name).
    expect(redisTryLater(Object.assign(new Error('getaddrinfo EAI_AGAIN redis'), { code: 'EAI_AGAIN' }))?.reason).toBe('is unreachable');
    expect(redisTryLater(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))?.reason).toBe('is unreachable');
    // BullMQ 6's class for a closed connection, and ioredis' retries exhausted.
    expect(redisTryLater(Object.assign(new Error('Connection is closed.'), { name: 'ConnectionClosedError' }))?.reason).toBe('is unreachable');
    expect(redisTryLater(Object.assign(new Error('the connection went away'), { name: 'ConnectionClosedError' }))?.reason).toBe('is unreachable');
    expect(redisTryLater(Object.assign(new Error('Reached the max retries per request limit (which is 20). Refer to "maxRetriesPerRequest" option for details.'), { name: 'MaxRetriesPerRequestError' }))).toBeDefined();
  });

  it('leaves an AggregateError alone unless every attempt in it is a lost connection', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED ::1:6379'), { code: 'ECONNREFUSED' });
    expect(redisTryLater(Object.assign(new AggregateError([refused, new TypeError('x is not a function')], ''), { code: 'ECONNREFUSED' }))).toBeUndefined();
    expect(redisTryLater(new AggregateError([], ''))).toBeUndefined();
    expect(redisTryLater(Object.assign(new Error('invalid'), { code: 'ERR_INVALID_ARG_TYPE' }))).toBeUndefined();
  });

  it('counts a Cluster between two layouts (failover, resharding) as "try later"', () => {
    // Seen in the cluster-failover fault test: the dead primary's slots still pointed at it for a moment.
    expect(redisTryLater(new Error('Too many Cluster redirections. Last error: ReplyError: MOVED 6910 127.0.0.1:43849'))?.reason).toBe('cluster is failing over or moving slots');
    expect(redisTryLater(new Error('Failed to refresh slots cache.'))?.retryAfterSeconds).toBe(2);
    expect(redisTryLater(new Error('Too many Cluster redirections. Last error: Error: Connection is closed.'))).toBeDefined();
  });

  it('tells refused credentials (NOAUTH, WRONGPASS) from an unreachable Redis', () => {
    const wrongPass = replyError('WRONGPASS invalid username-password pair or user is disabled.');
    const noAuth = replyError('NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time');
    for (const error of [wrongPass, noAuth, replyError('NOAUTH Authentication required.')]) {
      expect(redisAuthFailed(error)).toBe(true);
      expect(redisTryLater(error)).toMatchObject({ reason: expect.stringContaining('authentication failed'), retryAfterSeconds: 10 });
    }
    expect(redisAuthFailed(new Error("Stream isn't writeable and enableOfflineQueue options is false"))).toBe(false);
    // A command sent while a connection reconnects fails with ioredis' own words; while a tracked connection's last
    // attempt was refused for its credentials, that is the cause reported, until it is ready again.
    const notWritable = new Error("Stream isn't writeable and enableOfflineQueue options is false");
    const client = new EventEmitter();
    trackAuthFailures(client);
    expect(redisTryLater(notWritable)?.reason).toBe('is unreachable');
    client.emit('error', wrongPass);
    expect(redisTryLater(notWritable)?.reason).toContain('authentication failed');
    client.emit('ready');
    expect(redisTryLater(notWritable)?.reason).toBe('is unreachable');
    client.emit('error', noAuth);
    client.emit('error', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' }));
    expect(redisTryLater(notWritable)?.reason).toBe('is unreachable');
    client.emit('error', noAuth);
    client.emit('end');
    expect(redisTryLater(notWritable)?.reason).toBe('is unreachable');
  });

  it('leaves real errors alone', () => {
    expect(redisTryLater(replyError('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBeUndefined();
    expect(redisTryLater(replyError('ERR unknown command'))).toBeUndefined();
    expect(redisTryLater(new Error('the image cannot be decoded: BUSY signal'))).toBeUndefined();
    expect(redisTryLater('OOM')).toBeUndefined();
  });

  it('tells a full Redis (OOM) from the other "try later" replies', () => {
    expect(redisOutOfMemory(replyError("OOM command not allowed when used memory > 'maxmemory'."))).toBe(true);
    expect(redisOutOfMemory(replyError("ERR Error running script (call to f_1): @user_script:3: -OOM command not allowed when used memory > 'maxmemory'."))).toBe(true);
    const execAbort = Object.assign(replyError('EXECABORT Transaction discarded because of previous errors.'), { previousErrors: [replyError("OOM command not allowed when used memory > 'maxmemory'.")] });
    expect(redisOutOfMemory(execAbort)).toBe(true);
    expect(redisOutOfMemory(replyError("READONLY You can't write against a read only replica."))).toBe(false);
    expect(redisOutOfMemory(new Error('Connection is closed.'))).toBe(false);
    expect(redisOutOfMemory('OOM')).toBe(false);
  });
});
