import type Redis from 'ioredis';
import { AnalysisRecord, AppError, ErrorCode, RedisKeys, TenantId } from '@app/contracts';

/** The crash record's field for face matching (a pipeline of two models, not one model name). */
export const FACES_CRASH_SUBJECT = 'faces';

/** One image of one tenant as one model (or face matching) sees it: what worker deaths are counted against. */
export interface CrashSubject {
  tenant: TenantId;
  imageHash: string;
  /** A manifest model name, or FACES_CRASH_SUBJECT. */
  model: string;
}

/**
 * The record's field for deaths of coalesced classify jobs (`<model>` + this): such a job carried several images,
 * often of several tenants, so its death is not counted against any of them (an attacker's poison image would
 * otherwise condemn whatever was grouped with it); it only makes the images suspects, sent alone (see verdict).
 */
export const COALESCED_FIELD_SUFFIX = ':coalesced';

/** What the crash record says of an image for a model (verdict). */
export interface PoisonVerdict {
  /** `limit` or more stalled-limit failures of jobs that carried this image alone: refuse it. */
  poison: boolean;
  /** A coalesced job that carried it died twice: send it alone, so its own deaths can be counted. */
  suspect: boolean;
  /** Its own count (stalled-limit failures of jobs that carried it alone, since it last ran to its end). */
  crashes: number;
}

/**
 * KEYS: the image's crash record. ARGV: field, TTL seconds, incident window ms. Counts one stalled-limit failure unless
 * the field was counted less than the window ago (Redis' clock, kept in the field `<field>@`): jobs that lapsed in one
 * incident (one worker's death or freeze takes every job it held) fail at the limit together, and count once.
 * Returns the new count, or 0 when the failure joined the incident already counted.
 */
const COUNT_CRASH = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local at = ARGV[1] .. '@'
local last = tonumber(redis.call('HGET', KEYS[1], at) or '-1')
local count = 0
if last < 0 or now - last >= tonumber(ARGV[3]) then
  count = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  redis.call('HSET', KEYS[1], at, now)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return count
`;

/**
 * Poison images: images that kill the worker process holding them (a native crash in a decoder or ONNX Runtime).
 * BullMQ notices a dead holder only as a lapsed lock: the job goes back to the queue, and after two lapses it fails
 * as "job stalled more than allowable limit" (503, try again). Without a memory of it, every retry, and every read
 * of an analysis pair without a stored result, gave the image to two more workers, for ever.
 *
 * Per tenant and image, one Redis hash `iiq:{t}:image:<sha256>:crashes` holds, per model, how many of the image's
 * jobs failed that way since the last proof that the image does not kill (a worker that ran it to the end: see
 * `clear`). At `limit` (POISON_STALL_LIMIT, 2: about four dead workers) the image is an image fault for that model:
 * IMAGE_CRASHED_WORKER (422), remembered like an undecodable image, and never queued again while the record lives
 * (POISON_TTL_SECONDS after the last count). Reads happen where work is about to be queued (the API) and when a job
 * comes back to a worker after a lapse; writes only when a job failed at the stalled limit or a lapsed job finished:
 * the normal life of a job costs nothing here. Erased with the image (ImageErasure).
 */
export class PoisonImages {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    /** Stalled-limit failures that make the image poison for a model (POISON_STALL_LIMIT). */
    readonly limit: number,
    /** Life of a record after its last count, seconds (POISON_TTL_SECONDS). */
    readonly ttlSeconds: number,
    /**
     * Stalled-limit failures of one subject less than this apart count once (ms; LOCK_DURATION_MS): they are one
     * incident. Without it, N copies of one image in flight on a worker that froze twice (no crash at all) counted N
     * and condemned the image at once; so did the jobs a poison image's dying worker held beside it.
     */
    readonly incidentMs = 0,
  ) {}

  /** Stalled-limit failures counted against the subject (0: none, or expired). One HGET. */
  async crashes({ tenant, imageHash, model }: CrashSubject): Promise<number> {
    return Number((await this.redis.hget(this.keys.tenant(tenant).imageCrashes(imageHash), model)) ?? 0);
  }

  /** Whether the image is poison for the model: `limit` or more stalled-limit failures counted. */
  async isPoison(subject: CrashSubject): Promise<boolean> {
    return (await this.crashes(subject)) >= this.limit;
  }

  /** Poison and suspect in one HMGET; see PoisonVerdict. */
  async verdict({ tenant, imageHash, model }: CrashSubject): Promise<PoisonVerdict> {
    const [own, coalesced] = await this.redis.hmget(this.keys.tenant(tenant).imageCrashes(imageHash), model, model + COALESCED_FIELD_SUFFIX);
    return { poison: Number(own ?? 0) >= this.limit, suspect: Number(coalesced ?? 0) > 0, crashes: Number(own ?? 0) };
  }

  /** Throws IMAGE_CRASHED_WORKER when the image is poison for the model; otherwise says whether it is a suspect (verdict). */
  async assertNotPoison(subject: CrashSubject): Promise<PoisonVerdict> {
    const verdict = await this.verdict(subject);
    if (verdict.poison) throw poisonError(subject.model);
    return verdict;
  }

  /**
   * Counts one stalled-limit failure of a job of the subject (renewing the record's TTL); returns the count, or 0 when
   * it fell within `incidentMs` of the subject's last count (the same incident: not counted again).
   * `coalesced`: the job carried other images too; counted in its own field, which makes a suspect, never poison.
   */
  async countCrash({ tenant, imageHash, model }: CrashSubject, coalesced = false): Promise<number> {
    return Number(await this.redis.eval(COUNT_CRASH, 1, this.keys.tenant(tenant).imageCrashes(imageHash), coalesced ? model + COALESCED_FIELD_SUFFIX : model, this.ttlSeconds, this.incidentMs));
  }

  /**
   * Forgets the subject's count: a worker ran one of its jobs to the end although the job's lock had lapsed before
   * (a live worker that was slow or starved, or a job that came back after its holder died of something else).
   * Finishing proves the image does not kill; returns whether there was a count.
   */
  async clear({ tenant, imageHash, model }: CrashSubject): Promise<boolean> {
    return (await this.redis.hdel(this.keys.tenant(tenant).imageCrashes(imageHash), model)) === 1;
  }

  /** Whether the tenant has a crash record for the image (erasure answers 200 for an image known only by it). */
  async hasRecord(tenant: TenantId, imageHash: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.tenant(tenant).imageCrashes(imageHash))) === 1;
  }
}

/** The answer for a poison image: an image fault (422), the same on every retry. */
export function poisonError(model: string): AppError {
  const what = model === FACES_CRASH_SUBJECT ? 'face matching' : `model ${model}`;
  return new AppError(ErrorCode.ImageCrashedWorker, `this image crashed the worker processes that ran it with ${what} several times; it is not processed again`);
}

/**
 * The failure record of an analysis pair whose image is poison for the model: what its reads answer instead of
 * queueing it again. Written by the worker that declares the image poison, or by the API when it finds the verdict
 * for a pair about to be queued (`writtenBy`: a worker id, or 'api'); kept POISON_TTL_SECONDS.
 */
export function poisonFailureRecord(model: string, task: string | undefined, writtenBy: string): AnalysisRecord {
  const error = poisonError(model);
  return { state: 'failed', model, task: task ?? 'unknown', error: { code: error.code, message: error.message }, computedAt: new Date().toISOString(), workerId: writtenBy };
}
