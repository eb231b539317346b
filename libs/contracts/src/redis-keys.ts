import { TenantId } from './tenant';

/**
 * Every Redis key this product writes outside BullMQ's own `<QUEUE_PREFIX>:<queue>:*` keys.
 * docs/ARCHITECTURE.md lists them; keep the two in step.
 *
 * Redis Cluster: a key's slot is the hash of its tag (the text inside its first `{…}`), and every key one script
 * or transaction touches must share a slot. So every key that a script or MULTI groups with others carries a tag:
 * a tenant's records the tenant (`<name>:{t}:…`), the worker registry `{<name>:workers}`; BullMQ's keys carry
 * QUEUE_PREFIX's own braces (`{iiq}:inference:…`). Keys only ever touched alone (image bytes, locks, counters)
 * need none and spread across the cluster by their whole name.
 */
export class RedisKeys {
  /** The name every product key starts with: QUEUE_PREFIX without its braces (`iiq`). */
  readonly prefix: string;

  /** @param queuePrefix QUEUE_PREFIX: `iiq` or `{iiq}`; BullMQ uses it as given, the product's keys without braces. */
  constructor(readonly queuePrefix: string) {
    this.prefix = queuePrefix.replace(/^\{(.*)\}$/, '$1');
  }

  /** BullMQ's event stream of a queue (`<QUEUE_PREFIX>:<queue>:events`), which erasure cleans of an image's job ids. */
  queueEvents(queue: string): string {
    return `${this.queuePrefix}:${queue}:events`;
  }

  /** Raw image bytes of a synchronous request, read once by the worker (string, TTL). Job ids are random. */
  blob(jobId: string): string {
    return `${this.prefix}:blob:${jobId}`;
  }

  /**
   * The bytes of item `index` of a classify-batch job (string, TTL). Tagged with the job id, so a job's keys share
   * one Cluster slot: the API SETs them in one pipeline, the worker reads them with one MGET and DELs them at once.
   */
  batchBlob(jobId: string, index: number): string {
    return `${this.prefix}:blob:{${jobId}}.${index}`;
  }

  /**
   * A worker's heartbeat: its id, pid, loaded models (string JSON, TTL a few heartbeats). Tagged like liveWorkers,
   * with which one script writes it.
   */
  worker(workerId: string): string {
    return `{${this.prefix}:workers}:${workerId}`;
  }

  /** Live workers: worker id → when its heartbeat key expires (zset, epoch ms on Redis' clock; pruned as read). */
  liveWorkers(): string {
    return `{${this.prefix}:workers}`;
  }

  /** Tenants that have stored faces (set of names), so a starting worker can load their face indexes. */
  faceTenants(): string {
    return `${this.prefix}:faces:tenants`;
  }

  /**
   * Erasures whose snapshot files could not all be deleted yet: tenant → the highest tombstone sequence number
   * waiting (zset). Workers retry (FaceSnapshots.retryDeferredPurges); a tenant's entry goes once a purge at or
   * above its number succeeds, so it holds at most one entry per tenant.
   */
  facePurgesPending(): string {
    return `${this.prefix}:faces:purges-pending`;
  }

  /** Failed admin (dashboard) logins of one client address (counter with the throttle window's expiry). */
  adminFailures(client: string): string {
    return `${this.prefix}:admin-failures:${client}`;
  }

  /** The keys of one tenant's records. */
  tenant(tenant: TenantId): TenantKeys {
    return new TenantKeys(this.prefix, tenant);
  }
}

/**
 * One tenant's keys: `<prefix>:{<tenant>}:…`. The tenant is the Redis Cluster hash tag, so every key a
 * tenant's script or transaction touches lives in one slot, and tenants spread across slots.
 */
export class TenantKeys {
  /** What every key of this tenant starts with (Lua scripts build face and image keys from it). */
  readonly prefix: string;

  constructor(
    globalPrefix: string,
    readonly tenant: TenantId,
  ) {
    this.prefix = `${globalPrefix}:{${tenant}}`;
  }

  /** One model's result (or permanent failure) for one image: AnalysisRecord JSON, TTL RESULT_TTL_SECONDS. */
  result(imageHash: string, model: string): string {
    return `${this.prefix}:result:${imageHash}:${model}`;
  }

  /** Image metadata (ImageMetadata fields); its presence is what "the tenant has this image" means. */
  image(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}`;
  }

  /** A short lock (string, PX) held while an image's bytes and metadata are written together, or erased. */
  imageLock(imageHash: string): string {
    return `${this.prefix}:lock:image:${imageHash}`;
  }

  /** The set of models ever requested for an image (what GET /v1/images/:hash reports). */
  imageModels(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}:models`;
  }

  /** Pub/sub channel: a model finished for this image (message: model name). */
  imageEvents(imageHash: string): string {
    return `${this.prefix}:events:image:${imageHash}`;
  }

  /** Face index: sequence counter and the append-only log of added faces and tombstones (stream, id <seq>-1). */
  faceSeq(): string {
    return `${this.prefix}:faces:seq`;
  }

  faceLog(): string {
    return `${this.prefix}:faces:log`;
  }

  /**
   * Held (string: the holder's random token, PX expiry) while a worker saves the tenant's face-index snapshot
   * file; an erasure waits for it before deleting snapshots (libs/storage FaceSnapshots). Names no image.
   */
  faceSnapshotLock(): string {
    return `${this.prefix}:faces:snapshot-lock`;
  }

  /**
   * Held (string: the holder's random token, PX expiry) by the one worker preparing the tenant's next snapshot
   * from its memory-mapped base outside the lock (FaceSnapshots.lease): spares the others the same copy.
   */
  faceSnapshotLease(): string {
    return `${this.prefix}:faces:snapshot-lock:lease`;
  }

  /** One face: image hash, seq, box, landmarks, score (hash). */
  face(faceId: string): string {
    return `${this.prefix}:face:${faceId}`;
  }

  /** A face's matches: other face id → cosine similarity (zset). */
  faceMatches(faceId: string): string {
    return `${this.prefix}:face:${faceId}:matches`;
  }

  /** An image's face-matching record (JSON: face ids, skipped faces); present once the image was processed. */
  imageFaces(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}:faces`;
  }

  /**
   * How often the image killed the worker holding it, per model (hash: model name, or `faces` for face matching →
   * stalled-limit failures; TTL POISON_TTL_SECONDS, renewed at each count). At POISON_STALL_LIMIT the image is not
   * given to workers for that model any more (PoisonImages). Written for images sent to /v1/classify too, which
   * have no metadata record; erased with the image.
   */
  imageCrashes(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}:crashes`;
  }

  /** An image's match set: other image hash → best similarity (zset), kept symmetric. */
  imageMatches(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}:matches`;
  }
}

/** What a worker publishes in its heartbeat key. */
export interface WorkerHeartbeat {
  workerId: string;
  pid: number;
  host: string;
  startedAt: number;
  models: string[];
  /** Event-loop delay p99 (ms) over the last heartbeat interval. */
  eventLoopDelayP99Ms: number;
}
