import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { Logger } from 'pino';
import { FaceMatch, TenantId } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { FaceStore, NewFace } from '@app/storage';
import { FaceMatrix } from './face-matrix';

/** One tenant's faces in this worker: its matrix, and the sync in flight (one at a time). */
class TenantFaces {
  readonly matrix = new FaceMatrix(128);
  syncing?: Promise<void>;
}

export interface MatchedFace {
  faceId: string;
  seq: number;
  matches: FaceMatch[];
}

/**
 * This worker's view of every stored face, one matrix per tenant: a face is only ever compared with faces of
 * its own tenant. Correct under concurrency: a new face is first inserted into its tenant's log (taking the
 * next sequence number atomically), then that tenant's matrix is synced at least up to it, then it is compared
 * with every face of the tenant that has a lower number. Of two faces added at the same moment on different
 * workers, the later one is guaranteed to see the earlier one, so no pair is ever missed, and no pair is
 * compared twice.
 */
@Injectable()
export class FaceIndex implements OnModuleInit {
  private readonly tenants = new Map<TenantId, TenantFaces>();

  constructor(
    private readonly store: FaceStore,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  /** Loads every tenant known to have faces, so the first job of each pays no load. */
  async onModuleInit(): Promise<void> {
    for (const tenant of await this.store.tenants()) await this.load(tenant);
  }

  /** Faces held in memory, all tenants together. */
  get size(): number {
    let total = 0;
    for (const faces of this.tenants.values()) total += faces.matrix.size;
    return total;
  }

  /**
   * Inserts the faces into the tenant's log and returns, for each, the earlier faces of the same tenant it
   * matches; undefined when the tenant's image was erased meanwhile (nothing inserted).
   */
  async addAndMatch(tenant: TenantId, imageHash: string, faces: NewFace[], threshold: number): Promise<MatchedFace[] | undefined> {
    const seqs = await this.store.insertFaces(tenant, imageHash, faces);
    if (!seqs) return undefined;
    const own = this.tenants.get(tenant) ?? (await this.load(tenant));
    await this.sync(tenant, own, Math.max(0, ...seqs));
    return faces.map((face, i) => ({
      faceId: face.faceId,
      seq: seqs[i],
      matches: own.matrix.search(face.embedding, seqs[i], imageHash, threshold).map((m) => ({ ...m, similarity: Math.round(m.similarity * 10000) / 10000 })),
    }));
  }

  private async load(tenant: TenantId): Promise<TenantFaces> {
    let faces = this.tenants.get(tenant);
    if (faces) return faces;
    faces = new TenantFaces();
    this.tenants.set(tenant, faces);
    const started = performance.now();
    await this.sync(tenant, faces, Infinity);
    this.logger.info({ action: 'faces.index_loaded', tenant, faces: faces.matrix.size, ms: Math.round(performance.now() - started) }, "a tenant's face index loaded");
    return faces;
  }

  /** Applies the tenant's log until it has seen `untilSeq` (or everything). One sync per tenant at a time. */
  private async sync(tenant: TenantId, faces: TenantFaces, untilSeq: number): Promise<void> {
    const { matrix } = faces;
    while (matrix.lastSeq < untilSeq) {
      if (faces.syncing) {
        await faces.syncing;
        continue;
      }
      let progressed = false;
      faces.syncing = (async () => {
        const entries = await this.store.readLog(tenant, matrix.lastSeq);
        for (const entry of entries) {
          if (entry.op === 'add') matrix.add(entry.seq, entry.faceId, entry.imageHash, entry.embedding);
          else matrix.remove(entry.seq, entry.removedSeqs);
        }
        progressed = entries.length > 0;
      })();
      try {
        await faces.syncing;
      } finally {
        faces.syncing = undefined;
      }
      if (!progressed) {
        // The log has nothing newer (entries up to untilSeq were deleted): we are current.
        if (untilSeq !== Infinity) matrix.lastSeq = Math.max(matrix.lastSeq, untilSeq);
        return;
      }
    }
  }
}
