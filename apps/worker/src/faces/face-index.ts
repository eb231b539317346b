import { statSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { LogThrottle } from '@app/logging/log-throttle';
import type { Env } from '@app/config/env.schema';
import { FaceMatch, TenantId } from '@app/contracts';
import { FaceSnapshotFile, FaceSnapshots } from '@app/storage/face-snapshots';
import { FaceStore, NewFace } from '@app/storage/face-store';
import { ApproximateFaceIndex, checkGraph } from './approximate-face-index';
import { CompressedFaceIndex, PQ_MIN_FACES } from './compressed-face-index';
import { BaseIndex, SettlePolicy, TenantFaces, TenantMatch } from './tenant-faces';
import { BaseCopy, buildExact, catchUp, copyBase, ExactBuild, FaceIndexStorage, LogPageReader, needsExactBuild, needsInt8Rebuild, saveScrubbed, snapshotContent, writeSettled } from './settled-snapshot';

/** FACE_INDEX_MIN_FACES, FACE_TAIL_SETTLE_MS, FACE_SNAPSHOT_EVERY and FACE_INDEX_SEARCH_WIDTH (libs/config env.schema). */
export interface FaceIndexOptions {
  minFaces: number;
  settleMs: number;
  snapshotEvery: number;
  /** Mutable so the bench can measure several widths on one loaded index. */
  searchWidth: number;
  /** FACE_INDEX_STORAGE resolved (resolveFaceIndexStorage): the format of the snapshots this worker writes. */
  storage: FaceIndexStorage;
  /** Fewest indexed faces a PQ snapshot is built for (PQ_MIN_FACES; tests lower it); smaller tenants get int8 ones. */
  pqMinFaces?: number;
}

/** The options from the validated environment. */
export function faceIndexOptions(env: Pick<Env, 'FACE_INDEX_MIN_FACES' | 'FACE_TAIL_SETTLE_MS' | 'FACE_SNAPSHOT_EVERY' | 'FACE_INDEX_SEARCH_WIDTH' | 'FACE_INDEX_STORAGE'>): FaceIndexOptions {
  return { minFaces: env.FACE_INDEX_MIN_FACES, settleMs: env.FACE_TAIL_SETTLE_MS, snapshotEvery: env.FACE_SNAPSHOT_EVERY, searchWidth: env.FACE_INDEX_SEARCH_WIDTH, storage: resolveFaceIndexStorage(env.FACE_INDEX_STORAGE) };
}

/**
 * FACE_INDEX_STORAGE: `auto` is `pq` where the FAISS binding was built (scripts/build-native.mjs: Debian's
 * libfaiss-dev), else `int8`. `pq` without the binding throws (the worker refuses to start, saying what to install).
 */
export function resolveFaceIndexStorage(setting: 'auto' | FaceIndexStorage): FaceIndexStorage {
  if (setting === 'int8') return 'int8';
  if (CompressedFaceIndex.available) return 'pq';
  if (setting === 'pq') throw new Error('FACE_INDEX_STORAGE=pq needs the FAISS binding: install libfaiss-dev and g++ (Debian/Ubuntu), then npm run build');
  return 'int8';
}

/**
 * Opens a snapshot file as a tenant's base: an int8 file memory-mapped (usearch view) once its graph is checked
 * (checkGraph: a corrupt link would crash a search), a PQ file loaded (the binding checks it). Rejects on a bad file.
 */
async function openBase(file: FaceSnapshotFile): Promise<BaseIndex> {
  if (file.format === 'faiss') return CompressedFaceIndex.load(file.path, DIMENSIONS);
  await checkGraph(file.path, DIMENSIONS);
  return ApproximateFaceIndex.view(file.path, DIMENSIONS, file.sentinels);
}

export interface MatchedFace {
  faceId: string;
  seq: number;
  matches: FaceMatch[];
  /** Settled faces the approximate index offered and that were checked exactly (0 on the exact scan alone). */
  checked: number;
}

const DIMENSIONS = 128;
/**
 * Faces moved into an index per step of the background loop (each step blocks the event loop while usearch
 * inserts: about 0.2–0.5 ms a face at 10⁶ faces on 2 busy cores, so tens of ms); far more than faces arrive.
 */
const SETTLE_BATCH = 64;
/** Faces moved per step while a tenant loads (before the worker is ready, or on its first use). */
const LOAD_BATCH = 1024;
/** Idle pause of the background loop. */
const IDLE_MS = 1000;
/** At most one snapshot check per tenant this often (a directory listing), and one save per tenant per minute. */
const SNAPSHOT_CHECK_MS = 15_000;
const SNAPSHOT_MIN_INTERVAL_MS = 60_000;
/**
 * After a snapshot attempt of a tenant fails (a full disk, an unwritable folder, Redis away), the next waits
 * SNAPSHOT_MIN_INTERVAL_MS, doubling with each failure in a row up to this: a failure that persists must not
 * repeat the attempt's work (an exact PQ build is most of an hour at 10⁶ faces) every SNAPSHOT_CHECK_MS.
 */
const SNAPSHOT_RETRY_MAX_MS = 30 * 60_000;
/**
 * A replaced view is freed this long after the swap, not at once: a job that took the tenant's view just
 * before the swap may still search it for its other faces (each search is synchronous, a job's few faces take
 * milliseconds). A search after the release throws (the job is retried), it never silently misses faces.
 */
const RELEASE_AFTER_SWAP_MS = 10_000;
/** An idle tenant's view is synced with its log this often (one pipelined read), which also finds a log gone back. */
const LOG_CHECK_MS = 15_000;
/** How often the loop retries the snapshot purges erasures had to defer (FaceSnapshots.retryDeferredPurges): one ZRANGE when none. */
const PURGE_RETRY_MS = 15_000;
/** Loads of a tenant retried when its log goes back again while it loads. */
const LOAD_ATTEMPTS = 3;

/**
 * The tenant's log went back (Redis lost writes: a restart without the last second of its AOF, a failover, a
 * restore): a view that applied up to `before` finds the counter at `after`, or an entry it applied replaced.
 */
export class FaceLogRegressed extends Error {
  constructor(
    readonly tenant: TenantId,
    readonly before: number,
    readonly after: number,
  ) {
    super(`the face log of tenant ${tenant} went back from ${before} to ${after}`);
  }
}

/**
 * This worker's view of every stored face, per tenant (a face is only ever compared with faces of its own
 * tenant): an exact tail and, for tenants of FACE_INDEX_MIN_FACES faces or more, an approximate index of
 * settled faces (TenantFaces). Correct under concurrency: a new face is first inserted into its tenant's log
 * (taking the next sequence number atomically), then that tenant's view is synced at least up to it, then it
 * is compared with every face of the tenant that has a lower number. Of two faces added at the same moment on
 * different workers, the later one is guaranteed to see the earlier one; and since a face stays in the exact
 * tail for FACE_TAIL_SETTLE_MS after this worker first saw it, that comparison is exact: no pair is missed.
 *
 * Start-up: each tenant's newest snapshot file (FaceSnapshots) is viewed (memory-mapped, immutable: the
 * file-backed pages are shared by every worker on the host) and the log replayed after it; without one the
 * index is built from the log in memory. A background loop moves settled faces into the mutable index (the
 * delta after the snapshot) in small steps; once the delta holds FACE_SNAPSHOT_EVERY faces, or when the
 * tenant has no snapshot file any more (an erasure purged it), one worker under the tenant's lock writes a
 * new snapshot (base copy, removed faces scrubbed, delta added: writeSettled). Every worker that finds a newer
 * snapshot than the one it views (checked every SNAPSHOT_CHECK_MS) swaps to it: views the new file, replays
 * the log after it into a fresh TenantFaces, then replaces the old one in one step (a search sees the old
 * or the new, never a half state) and frees the old one RELEASE_AFTER_SWAP_MS later. An erased face stops
 * being returned at once (its log entry is gone, and its sequence number is filtered from the base); its
 * int8 vector leaves this worker's memory with that swap, which the purge makes due at once.
 *
 * Redis is the truth. When it loses recent writes, the tenant's counter restarts lower and numbers are given out
 * again, which a view whose cursor is ahead would never apply. Every read of the log also reads the counter and
 * the entry the view applied last (the same round trip), and an insert answers the counter: a counter below the
 * view's cursor, or that entry replaced by another, drops the view (one `faces.log_regressed` warning) and
 * rebuilds it from the log as it is now, deleting every snapshot file saved beyond the counter and never viewing
 * one (a file's numbers may now name other faces). Faces whose entries Redis lost are gone from matching.
 *
 * Plain class (no Nest import, so the e2e specs can run it in Jest); the worker module provides it by factory
 * and Nest calls its onModuleInit / onModuleDestroy.
 */
export class FaceIndex {
  private readonly tenants = new Map<TenantId, TenantFaces>();
  private readonly loading = new Map<TenantId, Promise<TenantFaces>>();
  private readonly snapshotChecked = new Map<TenantId, number>();
  private readonly snapshotSaved = new Map<TenantId, number>();
  /** Per tenant: snapshot attempts failed in a row, and when the next may start (SNAPSHOT_RETRY_MAX_MS). */
  private readonly snapshotFailures = new Map<TenantId, { failures: number; retryAt: number }>();
  /** Per tenant: the snapshot write or swap in progress (one at a time). */
  private readonly exclusive = new Map<TenantId, Promise<unknown>>();
  private readonly logChecked = new Map<TenantId, number>();
  /** Snapshot files found beyond their tenant's log, never viewed again (deleted, unless that failed). */
  private readonly discarded = new Set<string>();
  /**
   * Snapshot files this worker failed to open (corrupt, torn, unreadable): never tried again, and counted as no
   * file by the snapshot check, so a new snapshot becomes due instead of a full read and a warning every
   * SNAPSHOT_CHECK_MS (the next snapshot written deletes them).
   */
  private readonly unusable = new Set<string>();
  private readonly stopping = new AbortController();
  private loop?: Promise<void>;
  private warming: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: FaceStore,
    private readonly snapshots: FaceSnapshots,
    private readonly options: FaceIndexOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * Starts loading every tenant known to have faces, one at a time in the background (so the first job of each
   * pays no load), and the background loop; returns at once. A load can take long: a tenant without a usable
   * snapshot is built again from its log (minutes to an hour at 10⁶ faces). Awaited here, it held the worker's
   * start, its health port and every other tenant's and model's jobs for that long, and Kubernetes' liveness
   * probe restarted the pod, which started the build again (red team, stop 32). A job for a tenant still
   * loading waits for that tenant's load only.
   */
  async onModuleInit(): Promise<void> {
    this.logger.info({ action: 'faces.index_storage', storage: this.options.storage, pqMinFaces: this.pqMinFaces }, `face-index snapshots: ${this.options.storage === 'pq' ? 'PQ codes (FAISS)' : 'int8 vectors (usearch)'}`);
    this.warming = this.warmUp();
    this.loop = this.maintain();
  }

  /** Resolves once every tenant known at start is loaded or has failed to (for the bench and tests; never rejects). */
  loaded(): Promise<void> {
    return this.warming;
  }

  private async warmUp(): Promise<void> {
    try {
      for (const tenant of await this.store.tenants()) {
        if (this.stopping.signal.aborted) return;
        await this.tenantFaces(tenant).catch((error: unknown) => {
          // The tenant's first job loads it again (and answers the error, if it stays).
          if (!this.stopping.signal.aborted) this.logger.warn({ action: 'faces.index_load_failed', tenant, err: error }, "a tenant's face index could not be loaded at start; its next job tries again");
        });
      }
    } catch (error) {
      if (!this.stopping.signal.aborted) this.logger.warn({ action: 'faces.index_load_failed', err: error }, 'the tenants with faces could not be listed at start; each loads with its first job');
    }
  }

  /** Stops the background loop and any further start-up loads (a load under way is not waited for: it can take an hour). */
  async onModuleDestroy(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  /** Faces held in memory, all tenants together. */
  get size(): number {
    let total = 0;
    for (const faces of this.tenants.values()) total += faces.size;
    return total;
  }

  /** One tenant's view (for the bench and tests): tail and index sizes. */
  describe(tenant: TenantId): { tail: number; indexed: number; indexedUpTo: number; lastSeq: number; base: number; delta: number; baseRemoved: number; snapshot?: string } | undefined {
    const faces = this.tenants.get(tenant);
    return (
      faces && {
        tail: faces.tail.size,
        indexed: faces.indexedSize,
        indexedUpTo: faces.indexedUpTo,
        lastSeq: faces.lastSeq,
        base: faces.base ? faces.base.size - faces.baseRemoved.size : 0,
        delta: faces.settled?.size ?? 0,
        baseRemoved: faces.baseRemoved.size,
        snapshot: faces.baseFile?.path,
      }
    );
  }

  /**
   * Inserts the faces into the tenant's log and returns, for each, the earlier faces of the same tenant it
   * matches; undefined when the tenant's image was erased meanwhile (nothing inserted).
   */
  async addAndMatch(tenant: TenantId, imageHash: string, faces: NewFace[], threshold: number): Promise<MatchedFace[] | undefined> {
    const appliedBefore = this.tenants.get(tenant)?.lastSeq ?? 0;
    const inserted = await this.store.insert(tenant, imageHash, faces);
    if (!inserted) return undefined;
    const { seqs, head } = inserted;
    // The counter right after the insert below what this worker had applied before it: Redis lost writes (the
    // new faces' numbers may be at or below the view's cursor, where no sync would look), which a read settles.
    const own = await this.current(tenant, Math.max(0, ...seqs), head < appliedBefore);
    const matched: MatchedFace[] = [];
    for (const [i, face] of faces.entries()) {
      const found = await this.search(tenant, own, face.embedding, seqs[i], imageHash, threshold);
      matched.push({ faceId: face.faceId, seq: seqs[i], checked: found.checked, matches: found.matches.map((m) => ({ ...m, similarity: Math.round(m.similarity * 10000) / 10000 })) });
    }
    return matched;
  }

  /**
   * The tenant's faces numbered below `beforeSeq` (Infinity: all) from images other than `excludeImage` that
   * `embedding` matches, after syncing with the log. What addAndMatch does for each new face, without inserting.
   */
  async match(tenant: TenantId, embedding: Float32Array, threshold: number, beforeSeq = Infinity, excludeImage = ''): Promise<TenantMatch> {
    const own = await this.current(tenant, Infinity);
    return this.search(tenant, own, embedding, beforeSeq, excludeImage, threshold);
  }

  /**
   * Saves the tenant's snapshot now (tests, the bench, and the background loop when due), then views it in
   * place of what this worker held; undefined when it has nothing indexed or another worker holds the lock.
   */
  async saveSnapshot(tenant: TenantId): Promise<string | undefined> {
    return this.alone(tenant, async () => {
      const faces = await this.tenantFaces(tenant);
      try {
        return await this.saveSnapshotOf(tenant, faces);
      } catch (error) {
        if (!(error instanceof FaceLogRegressed)) throw error;
        // Found while bringing the view to the log's head under the lock: nothing was saved.
        this.dropRegressed(tenant, faces, error.before, error.after);
        return undefined;
      }
    });
  }

  private async saveSnapshotOf(tenant: TenantId, faces: TenantFaces): Promise<string | undefined> {
    if (faces.indexedSize === 0 && !faces.base) return undefined;
    const started = performance.now();
    const read = (seqs: number[]) => this.store.readFaces(tenant, seqs);
    const readLog = this.logPages(tenant);
    let copy: BaseCopy | undefined;
    let exact: ExactBuild | undefined;
    let giveBack: (() => Promise<void>) | undefined;
    let copyPrivateBytes: number | undefined;
    try {
      // The format is decided on the log as it is now: a view not synced since an erasure (up to LOG_CHECK_MS for an
      // idle tenant) counted the erased faces, chose PQ for a tenant that had fallen below the line and built
      // it from the faces left (FAISS refused fewer than 256: the snapshot failed), or copied a PQ base most of
      // whose faces were gone (instead of the int8 rebuild).
      await this.sync(tenant, faces, Infinity);
      const format = this.snapshotFormat(faces);
      // An int8 snapshot over a PQ base (FACE_INDEX_STORAGE changed, or the tenant shrank) cannot copy it (no
      // vectors in it): it is built from the log's float32 entries the same way as a PQ one.
      // An int8 base whose scrub sentinels pass the rebuild share is built again too (needsInt8Rebuild).
      const rebuild = format === 'pq' ? needsExactBuild(faces) : faces.base instanceof CompressedFaceIndex || needsInt8Rebuild(faces);
      if (rebuild) {
        // Links chosen on exact distances, from the log; long (minutes at 10⁵ faces): outside the lock, under the lease.
        giveBack = await this.snapshots.lease(tenant);
        if (!giveBack) return undefined;
        exact = await buildExact(faces, readLog, 1, format);
        if (!exact) return undefined;
        await catchUp(exact, faces, readLog);
      } else if (faces.base) {
        // The long part (the base copied, every delta face inserted again) outside the snapshot lock, which
        // erasures wait for; one worker at a time (the lease), the others find its file and swap to it.
        giveBack = await this.snapshots.lease(tenant);
        if (!giveBack) return undefined;
        const temp = await this.snapshots.tempPath(tenant, 'copy');
        try {
          copy = await copyBase(faces, temp, read);
        } finally {
          await unlink(temp).catch(() => undefined);
        }
      }
      const file = await this.snapshots.write(tenant, async (tempPath) => {
        await this.sync(tenant, faces, Infinity);
        if (exact) {
          await catchUp(exact, faces, readLog);
          await saveScrubbed(exact.index, tempPath);
          copyPrivateBytes = exact.privateBytes;
          return snapshotContent(exact.index, exact.coveredUpTo, exact.appliedUpTo, exact.pqLinked);
        }
        const written = await writeSettled(faces, tempPath, read, copy);
        copyPrivateBytes = written.copyPrivateBytes;
        return written.content;
      });
      if (!file) return undefined;
      this.lastCopyPrivateBytes = copyPrivateBytes;
      faces.settledSinceSnapshot = 0;
      this.snapshotSaved.set(tenant, Date.now());
      this.logger.info(
        {
          action: 'faces.snapshot_saved',
          tenant,
          faces: faces.indexedSize,
          indexedUpTo: file.indexedUpTo,
          appliedUpTo: file.appliedUpTo,
          bytes: statSync(file.path).size,
          copyPrivateBytes,
          ms: Math.round(performance.now() - started),
        },
        "a tenant's face index saved",
      );
      await this.swap(tenant, file);
      return file.path;
    } finally {
      copy?.index.release();
      exact?.index.release();
      await giveBack?.().catch(() => undefined); // FaceSnapshots.lease retries it while Redis is away
    }
  }

  /** The memory the last snapshot write's base copy took (bench): see writeSettled. */
  lastCopyPrivateBytes?: number;

  private async search(tenant: TenantId, faces: TenantFaces, embedding: Float32Array, beforeSeq: number, excludeImage: string, threshold: number): Promise<TenantMatch> {
    const found = await faces.match(embedding, beforeSeq, excludeImage, threshold, (seqs) => this.store.readFaces(tenant, seqs), this.options.searchWidth);
    if (found.truncated) this.logger.warn({ action: 'faces.search_truncated', tenant, matches: found.matches.length }, 'more faces above the threshold than one search returns; some matches may be missing');
    return found;
  }

  private get policy(): SettlePolicy {
    return { minFaces: this.options.minFaces, settleMs: this.options.settleMs, batch: SETTLE_BATCH };
  }

  /**
   * The tenant's current view, synced at least up to `untilSeq`. A swap may replace the view while the sync
   * waits on Redis: then the new one is synced and returned instead, so a search never uses a replaced view.
   * `suspect`: the caller saw a sign that the log went back, so the log is read (which settles it) even when the
   * view is already past `untilSeq`. A view found ahead of a log that went back is dropped and rebuilt
   * (dropRegressed), and the rebuilt one is synced and returned.
   */
  private async current(tenant: TenantId, untilSeq: number, suspect = false): Promise<TenantFaces> {
    for (;;) {
      const own = await this.tenantFaces(tenant);
      try {
        await this.sync(tenant, own, suspect ? Infinity : untilSeq);
      } catch (error) {
        if (!(error instanceof FaceLogRegressed)) throw error;
        this.dropRegressed(tenant, own, error.before, error.after);
        continue;
      }
      if (this.tenants.get(tenant) === own) return own;
    }
  }

  /**
   * Drops a view found ahead of its tenant's log (unless it was replaced already) and starts rebuilding the
   * tenant from the log as it is now; callers waiting for the tenant get the rebuilt view. The dropped view is
   * freed RELEASE_AFTER_SWAP_MS later (a job may still be searching it).
   */
  private dropRegressed(tenant: TenantId, faces: TenantFaces, before: number, after: number): void {
    if (this.tenants.get(tenant) !== faces) return;
    this.tenants.delete(tenant);
    setTimeout(() => faces.release(), RELEASE_AFTER_SWAP_MS).unref();
    const reload = this.load(tenant, { before, after }).finally(() => this.loading.delete(tenant));
    reload.catch(() => undefined); // its callers see the error through tenantFaces
    this.loading.set(tenant, reload);
  }

  /**
   * The tenant's snapshot files that are within its log (newest first) and the counter: each file saved beyond
   * the counter (Redis lost writes since; its numbers may be given to other faces) is deleted and never viewed
   * again. The counter is read after the listing, so a file another worker saves meanwhile is never taken for
   * one beyond the log (its appliedUpTo is at most the counter when it was saved).
   */
  private async snapshotsWithin(tenant: TenantId): Promise<{ head: number; files: FaceSnapshotFile[]; discarded: FaceSnapshotFile[] }> {
    const files = (await this.snapshots.list(tenant)).filter((file) => !this.discarded.has(file.path));
    const head = await this.store.headSeq(tenant);
    const beyond = files.filter((file) => file.appliedUpTo > head);
    for (const file of beyond) await this.discard(file);
    return { head, files: files.filter((file) => file.appliedUpTo <= head), discarded: beyond };
  }

  private async discard(file: FaceSnapshotFile): Promise<void> {
    this.discarded.add(file.path);
    await unlink(file.path).catch(() => undefined);
  }

  /** Runs `work` after any snapshot write or swap of the tenant in progress (one at a time per tenant). */
  private async alone<T>(tenant: TenantId, work: () => Promise<T>): Promise<T> {
    const previous = this.exclusive.get(tenant) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(work);
    const settled = run.catch(() => undefined);
    this.exclusive.set(tenant, settled);
    try {
      return await run;
    } finally {
      if (this.exclusive.get(tenant) === settled) this.exclusive.delete(tenant);
    }
  }

  /**
   * Replaces the tenant's view with one built on `file`: views it, replays the log after its indexedUpTo
   * (in the background: jobs keep using the old view meanwhile), catches up with what the old view had
   * applied, then swaps in one synchronous step. The old view is freed RELEASE_AFTER_SWAP_MS later. False
   * when the file cannot be viewed (deleted meanwhile, unreadable): the old view stays.
   */
  private async swap(tenant: TenantId, file: FaceSnapshotFile): Promise<boolean> {
    const started = performance.now();
    let fresh: TenantFaces;
    try {
      fresh = TenantFaces.fromSnapshot(await openBase(file), file);
    } catch (error) {
      this.unusable.add(file.path);
      this.logger.warn({ action: 'faces.snapshot_unreadable', tenant, path: file.path, err: error }, 'face index snapshot not usable; keeping the current view');
      return false;
    }
    try {
      await this.sync(tenant, fresh, Infinity, LOAD_BATCH);
    } catch (error) {
      fresh.release();
      if (!(error instanceof FaceLogRegressed)) throw error;
      // The file was saved beyond the log as it is now: never viewed again; the current view is as stale.
      await this.discard(file);
      const old = this.tenants.get(tenant);
      if (old && old.lastSeq > error.after) this.dropRegressed(tenant, old, old.lastSeq, error.after);
      return false;
    }
    for (;;) {
      const old = this.tenants.get(tenant);
      if (old && old.lastSeq > fresh.lastSeq) {
        // Entries the old view applied meanwhile, or the old view is ahead of a log that went back.
        const head = await this.store.headSeq(tenant);
        if (head < old.lastSeq) {
          fresh.release();
          this.dropRegressed(tenant, old, old.lastSeq, head);
          return false;
        }
        await this.sync(tenant, fresh, old.lastSeq, LOAD_BATCH);
        continue;
      }
      this.tenants.set(tenant, fresh);
      if (old) setTimeout(() => old.release(), RELEASE_AFTER_SWAP_MS).unref();
      this.logger.info(
        { action: 'faces.snapshot_swapped', tenant, snapshot: file.path, base: fresh.base!.size, delta: fresh.settled?.size ?? 0, tail: fresh.tail.size, ms: Math.round(performance.now() - started) },
        "a tenant's face index now views a newer snapshot",
      );
      return true;
    }
  }

  /** The tenant's view, loaded once (concurrent callers share the load). */
  private async tenantFaces(tenant: TenantId): Promise<TenantFaces> {
    const loaded = this.tenants.get(tenant);
    if (loaded) return loaded;
    let pending = this.loading.get(tenant);
    if (!pending) {
      pending = this.load(tenant).finally(() => this.loading.delete(tenant));
      this.loading.set(tenant, pending);
    }
    return pending;
  }

  /**
   * Newest readable snapshot within the log + the log after it, or the whole log. `regressed`: a view of this
   * worker was found ahead of the log (dropRegressed); said in the one `faces.log_regressed` warning, which a
   * load also gives when it finds snapshot files beyond the log. Retried when the log goes back while it loads.
   */
  private async load(tenant: TenantId, regressed?: { before: number; after: number }): Promise<TenantFaces> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.loadOnce(tenant, regressed);
      } catch (error) {
        if (!(error instanceof FaceLogRegressed) || attempt >= LOAD_ATTEMPTS) throw error;
        regressed = { before: error.before, after: error.after };
      }
    }
  }

  private async loadOnce(tenant: TenantId, regressed?: { before: number; after: number }): Promise<TenantFaces> {
    const started = performance.now();
    let faces: TenantFaces | undefined;
    let snapshot: string | undefined;
    const { head, files, discarded } = await this.snapshotsWithin(tenant);
    if (regressed || discarded.length > 0) {
      this.logger.warn(
        {
          action: 'faces.log_regressed',
          tenant,
          before: regressed?.before ?? Math.max(...discarded.map((file) => file.appliedUpTo)),
          after: regressed?.after ?? head,
          discardedSnapshots: discarded.map((file) => file.path),
        },
        "the tenant's face log went back (Redis lost writes): its faces are rebuilt from the log as it is now; faces whose entries were lost are gone from matching",
      );
    }
    for (const file of files) {
      if (this.unusable.has(file.path)) continue;
      try {
        faces = TenantFaces.fromSnapshot(await openBase(file), file);
        snapshot = file.path;
        break;
      } catch (error) {
        this.unusable.add(file.path);
        this.logger.warn({ action: 'faces.snapshot_unreadable', tenant, path: file.path, err: error }, 'face index snapshot not usable; trying an older one or the log');
      }
    }
    let builtExact = false;
    if (!faces && this.options.storage === 'pq' && head >= this.pqMinFaces) {
      faces = await this.buildColdBase(tenant, head);
      builtExact = faces !== undefined;
    }
    faces ??= new TenantFaces(DIMENSIONS);
    const fromSeq = faces.lastSeq;
    const loadedMs = performance.now() - started;
    try {
      await this.sync(tenant, faces, Infinity, LOAD_BATCH);
    } catch (error) {
      faces.release();
      if (error instanceof FaceLogRegressed && faces.baseFile) await this.discard(faces.baseFile);
      throw error;
    }
    this.tenants.set(tenant, faces);
    this.logger.info(
      {
        action: 'faces.index_loaded',
        tenant,
        faces: faces.size,
        indexed: faces.indexedSize,
        tail: faces.tail.size,
        snapshot,
        builtExact,
        replayed: faces.lastSeq - fromSeq,
        snapshotMs: Math.round(loadedMs),
        ms: Math.round(performance.now() - started),
      },
      "a tenant's face index loaded",
    );
    return faces;
  }

  /** The tenant's log a page at a time (FaceStore.readLog's entries), for exact builds and their catch-up. */
  private logPages(tenant: TenantId): LogPageReader {
    return async (afterSeq) => (await this.store.readLog(tenant, afterSeq)).entries;
  }

  /**
   * The format of the tenant's next snapshot: pq (FACE_INDEX_STORAGE resolved to pq) from pqMinFaces indexed
   * faces on. A tenant already on a PQ base keeps it while copies suffice down to half that, so a tenant near
   * the line is not rebuilt at every snapshot; one that shrinks further, or whose rebuild falls due below the
   * line, goes back to int8 (FAISS trains 256 centroids per sub-quantizer on its faces: too few for fewer).
   */
  private snapshotFormat(faces: TenantFaces): FaceIndexStorage {
    if (this.options.storage !== 'pq') return 'int8';
    const keepsPq = faces.base instanceof CompressedFaceIndex && !needsExactBuild(faces);
    return faces.indexedSize >= (keepsPq ? this.pqMinFaces / 2 : this.pqMinFaces) ? 'pq' : 'int8';
  }

  private get pqMinFaces(): number {
    return this.options.pqMinFaces ?? PQ_MIN_FACES;
  }

  /**
   * A tenant with no usable snapshot and a log of at least pqMinFaces entries, under FACE_INDEX_STORAGE=pq: its
   * index is built from exact vectors straight away (buildExact, every live face up to `head`) and held as the
   * tenant's base, not first as an int8 index that the first snapshot would build again. The base has no file
   * yet (`path` ''), so the first snapshot is due at once (a copy of it). Undefined when fewer live faces than
   * pqMinFaces remain (tombstones): the tenant then loads as before.
   */
  private async buildColdBase(tenant: TenantId, head: number): Promise<TenantFaces | undefined> {
    const readLog = this.logPages(tenant);
    const build = await buildExact({ dimensions: DIMENSIONS, indexedUpTo: head, lastSeq: head }, readLog, this.pqMinFaces);
    if (!build) return undefined;
    return TenantFaces.fromSnapshot(build.index, { path: '', indexedUpTo: build.coveredUpTo, appliedUpTo: build.appliedUpTo, sentinels: 0, format: 'faiss', pqLinked: 0 });
  }

  /**
   * Applies the tenant's log until it has seen `untilSeq` (or everything). One sync per tenant at a time.
   * The tail never grows past FACE_INDEX_MIN_FACES faces once the tenant has an index: the oldest move into
   * it on the way (a cold load of 10⁶ faces holds only that many float32 rows at once).
   */
  private async sync(tenant: TenantId, faces: TenantFaces, untilSeq: number, overflowBatch = SETTLE_BATCH): Promise<void> {
    while (faces.lastSeq < untilSeq) {
      if (faces.syncing) {
        await faces.syncing;
        continue;
      }
      let progressed = false;
      let head = 0;
      faces.syncing = (async () => {
        const read = await this.store.readLog(tenant, faces.lastSeq, { check: faces.lastEntry?.seq });
        if (faces.regressed(read)) throw new FaceLogRegressed(tenant, faces.lastSeq, read.head);
        const { entries } = read;
        head = read.head;
        faces.apply(entries, Date.now());
        progressed = entries.length > 0;
        const policy = { ...this.policy, batch: overflowBatch };
        while (faces.tail.size > policy.minFaces && faces.settle(Date.now(), { ...policy, settleMs: Infinity }) > 0) await yieldToLoop();
      })();
      try {
        await faces.syncing;
      } finally {
        faces.syncing = undefined;
      }
      if (!progressed) {
        // The log has nothing newer (entries up to untilSeq were deleted): we are current.
        if (untilSeq !== Infinity) faces.lastSeq = Math.max(faces.lastSeq, Math.min(untilSeq, head));
        return;
      }
    }
  }

  /**
   * One `faces.maintenance_failed` line per 10 s at most, with the failures not written (`suppressed`): while Redis
   * is away every tenant's periodic sync fails, and a worker holding many tenants wrote one error line per tenant
   * every LOG_CHECK_MS.
   */
  private readonly maintenanceFailures = new LogThrottle();

  private reportMaintenanceFailure(tenant: TenantId, error: unknown): void {
    const suppressed = this.maintenanceFailures.pass();
    if (suppressed !== undefined) this.logger.error({ action: 'faces.maintenance_failed', tenant, err: error, suppressed }, 'face index maintenance failed; will retry');
  }

  /**
   * Deletes the snapshot files an erasure could not (the API deferred them: FaceSnapshots.purgeOrDefer). Once
   * gone, the tenant has no file older than its tombstone and the next check writes a clean one.
   */
  private async retryDeferredPurges(): Promise<void> {
    try {
      const { purged, failed } = await this.snapshots.retryDeferredPurges();
      for (const tenant of purged) this.logger.info({ action: 'faces.snapshot_purge_completed', tenant }, 'snapshot files an erasure could not delete are deleted now');
      for (const { tenant, error } of failed) this.reportMaintenanceFailure(tenant, error);
    } catch (error) {
      this.reportMaintenanceFailure('*' as TenantId, error);
    }
  }

  /** Background: settle faces whose time has come, a small batch at a time, and save snapshots when due. */
  private async maintain(): Promise<void> {
    const { signal } = this.stopping;
    let purgesRetried = 0;
    while (!signal.aborted) {
      let busy = false;
      if (Date.now() - purgesRetried >= PURGE_RETRY_MS) {
        purgesRetried = Date.now();
        await this.retryDeferredPurges();
      }
      for (const [tenant, faces] of this.tenants) {
        if (signal.aborted) break;
        try {
          if (Date.now() - (this.logChecked.get(tenant) ?? 0) >= LOG_CHECK_MS) {
            // An idle tenant's view is synced too, so a log that went back is found before numbers are reused past it.
            this.logChecked.set(tenant, Date.now());
            await this.current(tenant, Infinity);
            busy = true;
          } else if (!faces.syncing && faces.settle(Date.now(), this.policy) > 0) busy = true;
          else await this.snapshotIfDue(tenant, faces);
        } catch (error) {
          this.reportMaintenanceFailure(tenant, error);
        }
        await yieldToLoop();
      }
      if (!busy) await sleep(IDLE_MS, undefined, { ref: false, signal }).catch(() => undefined);
    }
  }

  /**
   * Every SNAPSHOT_CHECK_MS (or once FACE_SNAPSHOT_EVERY faces settled here): writes a snapshot when due, or
   * swaps to a newer one another worker wrote. Due: the faces indexed since the newest file reach
   * FACE_SNAPSHOT_EVERY; or there is no file at all (first time, or an erasure purged it, which also makes
   * this worker's own view of the purged file go at the swap that follows) and the tenant has that many.
   */
  private async snapshotIfDue(tenant: TenantId, faces: TenantFaces): Promise<void> {
    if (faces.indexedSize === 0 && !faces.base) return;
    const now = Date.now();
    const every = this.options.snapshotEvery;
    if (faces.settledSinceSnapshot < every && now - (this.snapshotChecked.get(tenant) ?? 0) < SNAPSHOT_CHECK_MS) return;
    this.snapshotChecked.set(tenant, now);
    // Checked now: the next check comes after SNAPSHOT_CHECK_MS, also when the save below cannot happen yet
    // (a minute since this worker's last one, or another worker holds the lease and will write it).
    faces.settledSinceSnapshot = 0;
    // A .faiss file on a machine without the FAISS binding (FACE_INDEX_STORAGE was pq where it was written) can
    // never be viewed here: counted as no file, so an int8 one becomes due instead of a failed swap every check.
    // A file this worker failed to open (unusable) likewise.
    const newest = (await this.snapshots.list(tenant)).find((file) => !this.discarded.has(file.path) && !this.unusable.has(file.path) && (file.format !== 'faiss' || CompressedFaceIndex.available));
    const due = newest ? faces.indexedUpTo - newest.indexedUpTo >= every : faces.indexedSize >= every || faces.base !== undefined;
    const failed = this.snapshotFailures.get(tenant);
    if (due && now - (this.snapshotSaved.get(tenant) ?? 0) >= SNAPSHOT_MIN_INTERVAL_MS && now >= (failed?.retryAt ?? 0)) {
      try {
        // Only a snapshot saved ends the failures in a row: undefined is no attempt (another worker holds the
        // lease or the lock), and ending the run there let two workers whose writes fail alike take turns
        // starting the work again at once, each failure waiting a minute (the doubling never reached).
        if ((await this.saveSnapshot(tenant)) !== undefined) this.snapshotFailures.delete(tenant);
      } catch (error) {
        const failures = (failed?.failures ?? 0) + 1;
        this.snapshotFailures.set(tenant, { failures, retryAt: Date.now() + Math.min(SNAPSHOT_RETRY_MAX_MS, SNAPSHOT_MIN_INTERVAL_MS * 2 ** (failures - 1)) });
        throw error;
      }
      return;
    }
    if (newest && newest.path !== faces.baseFile?.path && newest.appliedUpTo > (faces.baseFile?.appliedUpTo ?? -1)) {
      await this.alone(tenant, async () => {
        // A snapshot another worker saved: this tenant's snapshots are being written again.
        if (this.tenants.get(tenant)?.baseFile?.path !== newest.path && (await this.swap(tenant, newest))) this.snapshotFailures.delete(tenant);
      });
    }
  }
}
