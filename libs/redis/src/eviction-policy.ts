import type { Cluster, default as Redis } from 'ioredis';

/**
 * Redis' maxmemory-policy, read from INFO memory (`maxmemory_policy:<name>`) rather than CONFIG GET: managed
 * services often refuse CONFIG, and some default to a volatile-* policy. Undefined when INFO does not say. On a
 * Cluster (RedisConnection's client is then an ioredis Cluster) every primary is asked, since each holds part of
 * the keys: the answer is the first policy other than noeviction, or undefined if a primary does not say.
 */
export async function readEvictionPolicy(redis: Redis): Promise<string | undefined> {
  const nodes = (redis as unknown as Cluster).isCluster ? (redis as unknown as Cluster).nodes('master') : [redis];
  const policies = await Promise.all(nodes.map(async (node) => /^maxmemory_policy:(\S+)/m.exec(await node.info('memory'))?.[1]));
  if (policies.length === 0 || policies.includes(undefined)) return undefined;
  return policies.find((policy) => policy !== 'noeviction') ?? 'noeviction';
}

/**
 * Why the policy is a danger, or undefined when it is `noeviction` (or the risk was accepted). BullMQ keeps
 * jobs in plain keys: with any other policy a full Redis evicts queued jobs, half their records, their image
 * bytes and results, and accepted work is lost without an error.
 */
export function evictionProblem(policy: string | undefined, riskAccepted: boolean): string | undefined {
  if (policy === 'noeviction' || riskAccepted) return undefined;
  const what = policy === undefined ? 'Redis did not report its maxmemory-policy (INFO memory)' : `Redis' maxmemory-policy is "${policy}"`;
  return (
    `${what}: when Redis fills up it may evict queued jobs, their image bytes and results, and accepted work is lost silently. ` +
    'Set maxmemory-policy to noeviction (redis-server --maxmemory-policy noeviction, CONFIG SET maxmemory-policy noeviction, ' +
    "or your provider's parameter for it), or set REDIS_ALLOW_EVICTION=true to accept the risk"
  );
}

/** At start: throws with evictionProblem's message unless the policy is noeviction or the risk is accepted. */
export async function assertNoEviction(redis: Redis, riskAccepted: boolean): Promise<string | undefined> {
  const policy = await readEvictionPolicy(redis);
  const problem = evictionProblem(policy, riskAccepted);
  if (problem) throw new Error(problem);
  return policy;
}
