import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { asTenantId, RedisKeys, TenantId } from '@app/contracts';

/** One saved approximate face index of a tenant, named by what it covers. */
export interface FaceSnapshotFile {
  path: string;
  /** Every face of the tenant with a sequence number up to this one (and not removed) is in the file. */
  indexedUpTo: number;
  /** The log was applied up to here when it was saved: no tombstone up to here names a face in the file. */
  appliedUpTo: number;
  /** Scrub sentinels in the file (see ApproximateFaceIndex); 0 in a `faiss` file. */
  sentinels: number;
  /**
   * `usearch`: HNSW with int8 vectors (ApproximateFaceIndex, memory-mapped). `faiss`: HNSW with PQ codes
   * (CompressedFaceIndex, loaded), whose third number is `pqLinked` instead of `sentinels`.
   */
  format: 'usearch' | 'faiss';
  /** Faces of a `faiss` file linked on PQ distances (added after its exact build); 0 in a `usearch` file. */
  pqLinked: number;
}

/** What the writer reports about the file it saved. */
export type SnapshotContent = Omit<FaceSnapshotFile, 'path'>;

/**
 * Longest a writer may hold a tenant's snapshot lock: saving 10⁶ faces takes under a second (bench); past this
 * the lock expires, an erasure stops waiting, and a writer that finds its lock gone deletes the file it wrote.
 * Below the 30 s of the image lock an erasure holds while it waits (ImageLocks).
 */
export const SNAPSHOT_LOCK_MS = 20_000;

/** ZREM of a tenant's deferred purge when its number is at most ARGV[2] (a purge up to there deleted its files). */
const CLEAR_IF_COVERED = `local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0`;

/** A file system's refusal (EPERM, EACCES, EROFS, EIO, EBUSY…), not Redis trouble. */
function isFileError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) && (error as NodeJS.ErrnoException).syscall !== undefined;
}

/**
 * Time to live of a snapshot lease (FaceSnapshots.lease), renewed every third of it while its holder works: a
 * worker that dies mid-work frees the lease within a minute, and work of any length (an exact PQ build takes
 * most of an hour at 10⁶ faces) keeps it. A holder whose event loop stalls past it only lets a second worker
 * start the same work: the snapshot lock alone keeps erasure safe.
 */
export const SNAPSHOT_LEASE_MS = 60_000;
/** How often a lease that could not be given back (Redis away) is tried again, until its time to live has passed. */
const LEASE_RELEASE_RETRY_MS = 2_000;

const NAME = /^faces-(\d+)-(\d+)-(\d+)\.(usearch|faiss)$/;
const TEMP = /^\.tmp-/;

/** Extends the lease only if it is still ours (ARGV[2] ms); 1 when it was. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

/** Releases the lock only if it is still ours; 1 when it was. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * Saved face indexes, beside the content store: `<STORAGE_DIR>/<tenant>/.face-index/faces-<indexedUpTo>-
 * <appliedUpTo>-<sentinels>.usearch` or `…-<pqLinked>.faiss` (FACE_INDEX_STORAGE), so a starting worker loads one and replays the tenant's log after
 * `indexedUpTo` instead of rebuilding. The files hold int8 copies of the tenant's embeddings, so erasure
 * must reach them: an erased face's tombstone has a sequence number T, and every file with
 * `appliedUpTo < T` may hold the face, so `purgeBefore(T)` deletes them. Files saved later were saved by a
 * worker that had applied T (and scrubbed the face's vector), so they are clean.
 *
 * The race between a writer and an erasure is closed by one lock per tenant in Redis
 * (`<prefix>:{t}:faces:snapshot-lock`): a writer takes it, then brings its index up to the log's head, saves,
 * renames and releases. An erasure appends its tombstone first, then waits while the lock is held, then
 * purges. Either the writer took the lock after the tombstone (and applied it), or the erasure waits for the
 * file to be complete and deletes it.
 *
 * Workers memory-map (usearch view) the file they started from or last swapped to, so deleting a file does not
 * take its bytes out of their memory at once: an erased face stops being returned at once (its log entry is
 * gone, and workers filter the removed faces of their mapped base), and its int8 vector leaves a worker when
 * that worker swaps to the next snapshot and frees the old mapping, which a purge makes due at once (the
 * tenant then has no file newer than the one mapped; worker FaceIndex).
 */
export class FaceSnapshots {
  readonly root: string;

  constructor(
    root: string,
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    this.root = resolve(root);
  }

  folder(tenant: TenantId): string {
    return join(this.root, asTenantId(tenant), '.face-index');
  }

  /**
   * Claims the preparation of the tenant's next snapshot for this worker (SET NX PX `leaseMs` on
   * `<snapshot-lock>:lease`, renewed every third of it until given back), so that the workers that all find a
   * snapshot due at the same moment do not all copy or build the index: returns a function that gives the
   * lease back (and stops renewing it; when Redis cannot be reached it rejects and keeps trying in the
   * background while the lease could last), or undefined when another worker holds it. Only spares work; the snapshot lock alone keeps erasure safe.
   */
  async lease(tenant: TenantId, leaseMs = SNAPSHOT_LEASE_MS): Promise<(() => Promise<void>) | undefined> {
    const key = this.keys.tenant(tenant).faceSnapshotLease();
    const token = randomBytes(12).toString('hex');
    if ((await this.redis.set(key, token, 'PX', leaseMs, 'NX')) !== 'OK') return undefined;
    // A renewal that fails (Redis away) is tried again at the next tick; the lease lapses by itself if none lands.
    const renewing = setInterval(() => void this.redis.eval(RENEW, 1, key, token, leaseMs).catch(() => undefined), Math.max(1, Math.floor(leaseMs / 3)));
    renewing.unref();
    const release = () => this.redis.eval(RELEASE, 1, key, token);
    return async () => {
      clearInterval(renewing);
      try {
        await release();
      } catch (error) {
        // Redis away (a restart keeps the key with its data): tried again in the background until it lapses,
        // so the next attempt need not wait out the lease. The caller still learns this attempt failed.
        const deadline = Date.now() + leaseMs;
        const retry = () => {
          if (Date.now() < deadline) release().catch(() => setTimeout(retry, LEASE_RELEASE_RETRY_MS).unref());
        };
        setTimeout(retry, LEASE_RELEASE_RETRY_MS).unref();
        throw error;
      }
    };
  }

  /** A path for a temporary file in the tenant's folder (created if needed): purgeBefore deletes leftovers. */
  async tempPath(tenant: TenantId, purpose: string): Promise<string> {
    const folder = this.folder(tenant);
    await mkdir(folder, { recursive: true });
    return join(folder, `.tmp-${purpose}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** The tenant's complete snapshot files, newest (highest appliedUpTo) first. */
  async list(tenant: TenantId): Promise<FaceSnapshotFile[]> {
    const folder = this.folder(tenant);
    const files: FaceSnapshotFile[] = [];
    for (const name of await readdir(folder).catch(() => [] as string[])) {
      const parts = NAME.exec(name);
      if (!parts) continue;
      const format = parts[4] as FaceSnapshotFile['format'];
      const third = Number(parts[3]);
      files.push({ path: join(folder, name), indexedUpTo: Number(parts[1]), appliedUpTo: Number(parts[2]), format, sentinels: format === 'usearch' ? third : 0, pqLinked: format === 'faiss' ? third : 0 });
    }
    return files.sort((a, b) => b.appliedUpTo - a.appliedUpTo || b.indexedUpTo - a.indexedUpTo);
  }

  /**
   * Saves a snapshot under the tenant's lock: `save(tempPath)` must bring the index up to the log's head,
   * write it to `tempPath` and say what it holds. Returns the file, or undefined when another writer holds
   * the lock (nothing is written) or the lock was lost meanwhile (the file is deleted again). Older files
   * are deleted once the new one is in place.
   */
  async write(tenant: TenantId, save: (tempPath: string) => Promise<SnapshotContent>): Promise<FaceSnapshotFile | undefined> {
    const lock = this.keys.tenant(tenant).faceSnapshotLock();
    const token = randomBytes(12).toString('hex');
    if ((await this.redis.set(lock, token, 'PX', SNAPSHOT_LOCK_MS, 'NX')) !== 'OK') return undefined;
    const folder = this.folder(tenant);
    const temp = join(folder, `.tmp-${process.pid}-${token}`);
    let file: FaceSnapshotFile | undefined;
    try {
      await mkdir(folder, { recursive: true });
      const content = await save(temp);
      const third = content.format === 'usearch' ? content.sentinels : content.pqLinked;
      file = { path: join(folder, `faces-${content.indexedUpTo}-${content.appliedUpTo}-${third}.${content.format}`), ...content };
      await rename(temp, file.path);
    } finally {
      await unlink(temp).catch(() => undefined);
      const stillOurs = (await this.redis.eval(RELEASE, 1, lock, token)) === 1;
      if (file && !stillOurs) {
        // An erasure may have purged without waiting for us: this file must not outlive it.
        await unlink(file.path).catch(() => undefined);
        file = undefined;
      }
    }
    if (file) for (const older of await this.list(tenant)) if (older.path !== file.path) await unlink(older.path).catch(() => undefined);
    return file;
  }

  /**
   * purgeBefore for an erasure that has already happened in Redis: a file that cannot be deleted now (a read-only
   * folder, EPERM, EIO) does not fail the erasure (its faces are no longer returned; answering 500 left the
   * client a 404 on retry and the vectors on disk for good: red team, stop 32). The tenant's tombstone number is
   * recorded instead (RedisKeys.facePurgesPending) and workers retry until the files are gone.
   * @param tombstoneSeq the erasure's tombstone number, 0 when it removed no face (nothing to purge)
   * @returns files deleted now, and the error that deferred the rest (undefined when nothing is left)
   * @throws only when Redis cannot record the deferral (the caller answers "try later")
   */
  async purgeOrDefer(tenant: TenantId, tombstoneSeq: number): Promise<{ removed: number; deferred?: Error }> {
    // 0: the erasure removed no face (no tombstone), so no file can hold one of them.
    if (tombstoneSeq <= 0) return { removed: 0 };
    try {
      const removed = await this.purgeBefore(tenant, tombstoneSeq);
      await this.clearPending(tenant, tombstoneSeq);
      return { removed };
    } catch (error) {
      if (!isFileError(error)) throw error;
      await this.redis.zadd(this.keys.facePurgesPending(), 'GT', tombstoneSeq, tenant);
      return { removed: 0, deferred: error as Error };
    }
  }

  /**
   * Runs every deferred purge (purgeOrDefer) again, at most `limit` tenants; each one that succeeds is cleared.
   * @returns the tenants purged, and those still failing with their errors
   */
  async retryDeferredPurges(limit = 100): Promise<{ purged: TenantId[]; failed: { tenant: TenantId; error: unknown }[] }> {
    const pending = await this.redis.zrange(this.keys.facePurgesPending(), '0', String(limit - 1), 'WITHSCORES');
    const purged: TenantId[] = [];
    const failed: { tenant: TenantId; error: unknown }[] = [];
    for (let i = 0; i < pending.length; i += 2) {
      const tenant = asTenantId(pending[i]);
      const tombstoneSeq = Number(pending[i + 1]);
      try {
        await this.purgeBefore(tenant, tombstoneSeq);
        await this.clearPending(tenant, tombstoneSeq);
        purged.push(tenant);
      } catch (error) {
        failed.push({ tenant, error });
      }
    }
    return { purged, failed };
  }

  /** Clears the tenant's deferred purge if a purge up to `tombstoneSeq` covers it (a later erasure's stays). */
  private async clearPending(tenant: TenantId, tombstoneSeq: number): Promise<void> {
    await this.redis.eval(CLEAR_IF_COVERED, 1, this.keys.facePurgesPending(), tenant, tombstoneSeq);
  }

  /**
   * After a tombstone with sequence number `tombstoneSeq`: waits while a writer holds the tenant's lock (at
   * most SNAPSHOT_LOCK_MS), then deletes every snapshot saved before that tombstone was applied, and any
   * temporary file a dead writer left. Returns how many files were deleted.
   */
  async purgeBefore(tenant: TenantId, tombstoneSeq: number): Promise<number> {
    const lock = this.keys.tenant(tenant).faceSnapshotLock();
    const deadline = Date.now() + SNAPSHOT_LOCK_MS;
    while ((await this.redis.exists(lock)) === 1 && Date.now() < deadline) await sleep(25);
    let removed = 0;
    const folder = this.folder(tenant);
    const stale = (await this.list(tenant)).filter((file) => file.appliedUpTo < tombstoneSeq).map((file) => file.path);
    for (const name of await readdir(folder).catch(() => [] as string[])) if (TEMP.test(name)) stale.push(join(folder, name));
    for (const path of stale) {
      try {
        await unlink(path);
        removed++;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    return removed;
  }
}

/** The one error line of an erasure whose snapshot purge was deferred (FaceSnapshots.purgeOrDefer). */
export function logPurgeDeferred(logger: Logger, subject: { tenant: TenantId; imageHash: string; requestId?: string }, error: Error): void {
  logger.error(
    { action: 'faces.snapshot_purge_deferred', ...subject, err: error },
    "face-index snapshot files that may hold the erased faces could not be deleted now: workers retry until they are (the faces are no longer returned)",
  );
}
