import { statSync } from 'node:fs';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Env } from '@app/config/env.schema';
import { FaceMatch, TenantId } from '@app/contracts';
import { FaceSnapshots } from '@app/storage/face-snapshots';
import { FaceStore, NewFace } from '@app/storage/face-store';
import { ApproximateFaceIndex } from './approximate-face-index';
import { SettlePolicy, TenantFaces, TenantMatch } from './tenant-faces';

/** FACE_INDEX_MIN_FACES, FACE_TAIL_SETTLE_MS, FACE_SNAPSHOT_EVERY and FACE_INDEX_SEARCH_WIDTH (libs/config env.schema). */
export interface FaceIndexOptions {
  minFaces: number;
  settleMs: number;
  snapshotEvery: number;
  /** Mutable so the bench can measure several widths on one loaded index. */
  searchWidth: number;
}

/** The options from the validated environment. */
export function faceIndexOptions(env: Pick<Env, 'FACE_INDEX_MIN_FACES' | 'FACE_TAIL_SETTLE_MS' | 'FACE_SNAPSHOT_EVERY' | 'FACE_INDEX_SEARCH_WIDTH'>): FaceIndexOptions {
  return { minFaces: env.FACE_INDEX_MIN_FACES, settleMs: env.FACE_TAIL_SETTLE_MS, snapshotEvery: env.FACE_SNAPSHOT_EVERY, searchWidth: env.FACE_INDEX_SEARCH_WIDTH };
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
 * This worker's view of every stored face, per tenant (a face is only ever compared with faces of its own
 * tenant): an exact tail and, for tenants of FACE_INDEX_MIN_FACES faces or more, an approximate index of
 * settled faces (TenantFaces). Correct under concurrency: a new face is first inserted into its tenant's log
 * (taking the next sequence number atomically), then that tenant's view is synced at least up to it, then it
 * is compared with every face of the tenant that has a lower number. Of two faces added at the same moment on
 * different workers, the later one is guaranteed to see the earlier one; and since a face stays in the exact
 * tail for FACE_TAIL_SETTLE_MS after this worker first saw it, that comparison is exact: no pair is missed.
 *
 * Start-up: each tenant's newest snapshot file (FaceSnapshots) is loaded and the log replayed after it;
 * without one the index is built from the log. A background loop moves settled faces into the index in small
 * steps and saves a new snapshot every FACE_SNAPSHOT_EVERY settled faces (one worker at a time, under the
 * tenant's lock), or soon after an erasure deleted the old one.
 *
 * Plain class (no Nest import, so the e2e specs can run it in Jest); the worker module provides it by factory
 * and Nest calls its onModuleInit / onModuleDestroy.
 */
export class FaceIndex {
  private readonly tenants = new Map<TenantId, TenantFaces>();
  private readonly loading = new Map<TenantId, Promise<TenantFaces>>();
  private readonly snapshotChecked = new Map<TenantId, number>();
  private readonly snapshotSaved = new Map<TenantId, number>();
  private readonly stopping = new AbortController();
  private loop?: Promise<void>;

  constructor(
    private readonly store: FaceStore,
    private readonly snapshots: FaceSnapshots,
    private readonly options: FaceIndexOptions,
    private readonly logger: Logger,
  ) {}

  /** Loads every tenant known to have faces, so the first job of each pays no load; then starts the background loop. */
  async onModuleInit(): Promise<void> {
    for (const tenant of await this.store.tenants()) await this.tenantFaces(tenant);
    this.loop = this.maintain();
  }

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
  describe(tenant: TenantId): { tail: number; indexed: number; indexedUpTo: number; lastSeq: number } | undefined {
    const faces = this.tenants.get(tenant);
    return faces && { tail: faces.tail.size, indexed: faces.settled?.size ?? 0, indexedUpTo: faces.indexedUpTo, lastSeq: faces.lastSeq };
  }

  /**
   * Inserts the faces into the tenant's log and returns, for each, the earlier faces of the same tenant it
   * matches; undefined when the tenant's image was erased meanwhile (nothing inserted).
   */
  async addAndMatch(tenant: TenantId, imageHash: string, faces: NewFace[], threshold: number): Promise<MatchedFace[] | undefined> {
    const seqs = await this.store.insertFaces(tenant, imageHash, faces);
    if (!seqs) return undefined;
    const own = await this.tenantFaces(tenant);
    await this.sync(tenant, own, Math.max(0, ...seqs));
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
    const own = await this.tenantFaces(tenant);
    await this.sync(tenant, own, Infinity);
    return this.search(tenant, own, embedding, beforeSeq, excludeImage, threshold);
  }

  /** Saves the tenant's snapshot now (tests and the bench); undefined when it has no index or another worker holds the lock. */
  async saveSnapshot(tenant: TenantId): Promise<string | undefined> {
    const faces = await this.tenantFaces(tenant);
    if (!faces.settled) return undefined;
    const started = performance.now();
    const file = await this.snapshots.write(tenant, async (tempPath) => {
      await this.sync(tenant, faces, Infinity);
      const index = faces.settled!;
      index.save(tempPath);
      return { indexedUpTo: faces.indexedUpTo, appliedUpTo: faces.lastSeq, sentinels: index.sentinelCount };
    });
    if (!file) return undefined;
    faces.settledSinceSnapshot = 0;
    this.snapshotSaved.set(tenant, Date.now());
    this.logger.info(
      { action: 'faces.snapshot_saved', tenant, faces: faces.settled.size, indexedUpTo: file.indexedUpTo, appliedUpTo: file.appliedUpTo, bytes: statSync(file.path).size, ms: Math.round(performance.now() - started) },
      "a tenant's face index saved",
    );
    return file.path;
  }

  private async search(tenant: TenantId, faces: TenantFaces, embedding: Float32Array, beforeSeq: number, excludeImage: string, threshold: number): Promise<TenantMatch> {
    const found = await faces.match(embedding, beforeSeq, excludeImage, threshold, (seqs) => this.store.readFaces(tenant, seqs), this.options.searchWidth);
    if (found.truncated) this.logger.warn({ action: 'faces.search_truncated', tenant, matches: found.matches.length }, 'more faces above the threshold than one search returns; some matches may be missing');
    return found;
  }

  private get policy(): SettlePolicy {
    return { minFaces: this.options.minFaces, settleMs: this.options.settleMs, batch: SETTLE_BATCH };
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

  /** Newest readable snapshot + the log after it, or the whole log. */
  private async load(tenant: TenantId): Promise<TenantFaces> {
    const started = performance.now();
    let faces: TenantFaces | undefined;
    let snapshot: string | undefined;
    for (const file of await this.snapshots.list(tenant)) {
      try {
        faces = TenantFaces.fromSnapshot(ApproximateFaceIndex.load(file.path, DIMENSIONS, file.sentinels), file.indexedUpTo);
        snapshot = file.path;
        break;
      } catch (error) {
        this.logger.warn({ action: 'faces.snapshot_unreadable', tenant, path: file.path, err: error }, 'face index snapshot not usable; trying an older one or the log');
      }
    }
    faces ??= new TenantFaces(DIMENSIONS);
    const fromSeq = faces.lastSeq;
    const loadedMs = performance.now() - started;
    await this.sync(tenant, faces, Infinity, LOAD_BATCH);
    this.tenants.set(tenant, faces);
    this.logger.info(
      {
        action: 'faces.index_loaded',
        tenant,
        faces: faces.size,
        indexed: faces.settled?.size ?? 0,
        tail: faces.tail.size,
        snapshot,
        replayed: faces.lastSeq - fromSeq,
        snapshotMs: Math.round(loadedMs),
        ms: Math.round(performance.now() - started),
      },
      "a tenant's face index loaded",
    );
    return faces;
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
      faces.syncing = (async () => {
        const entries = await this.store.readLog(tenant, faces.lastSeq);
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
        if (untilSeq !== Infinity) faces.lastSeq = Math.max(faces.lastSeq, untilSeq);
        return;
      }
    }
  }

  /** Background: settle faces whose time has come, a small batch at a time, and save snapshots when due. */
  private async maintain(): Promise<void> {
    const { signal } = this.stopping;
    while (!signal.aborted) {
      let busy = false;
      for (const [tenant, faces] of this.tenants) {
        if (signal.aborted) break;
        try {
          if (!faces.syncing && faces.settle(Date.now(), this.policy) > 0) busy = true;
          else await this.snapshotIfDue(tenant, faces);
        } catch (error) {
          this.logger.error({ action: 'faces.maintenance_failed', tenant, err: error }, 'face index maintenance failed; will retry');
        }
        await yieldToLoop();
      }
      if (!busy) await sleep(IDLE_MS, undefined, { ref: false, signal }).catch(() => undefined);
    }
  }

  private async snapshotIfDue(tenant: TenantId, faces: TenantFaces): Promise<void> {
    if (!faces.settled) return;
    const now = Date.now();
    const every = this.options.snapshotEvery;
    if (faces.settledSinceSnapshot < every && now - (this.snapshotChecked.get(tenant) ?? 0) < SNAPSHOT_CHECK_MS) return;
    if (now - (this.snapshotSaved.get(tenant) ?? 0) < SNAPSHOT_MIN_INTERVAL_MS) return;
    this.snapshotChecked.set(tenant, now);
    const newest = (await this.snapshots.list(tenant))[0];
    // Another worker's snapshot may already cover what this one settled; with none (first time, or an erasure
    // deleted it), a tenant of FACE_SNAPSHOT_EVERY indexed faces or more gets one (smaller ones build in seconds).
    const due = newest ? faces.indexedUpTo - newest.indexedUpTo >= every : faces.settled.size >= every;
    if (!due) {
      faces.settledSinceSnapshot = 0;
      return;
    }
    await this.saveSnapshot(tenant);
  }
}
