import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { Logger } from 'pino';
import { FaceMatch } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { FaceStore, NewFace } from '@app/storage';
import { FaceMatrix } from './face-matrix';

/**
 * This worker's view of every stored face. Correct under concurrency: a new face is first inserted (taking
 * the next sequence number atomically), then the matrix is synced at least up to it, then it is compared with
 * every face that has a lower number. Of two faces added at the same moment on different workers, the later
 * one is guaranteed to see the earlier one, so no pair is ever missed, and no pair is compared twice.
 */
@Injectable()
export class FaceIndex implements OnModuleInit {
  readonly matrix = new FaceMatrix(128);
  private syncing?: Promise<void>;

  constructor(
    private readonly store: FaceStore,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async onModuleInit(): Promise<void> {
    const started = performance.now();
    await this.sync(Infinity);
    this.logger.info({ action: 'faces.index_loaded', faces: this.matrix.size, ms: Math.round(performance.now() - started) }, 'face index loaded');
  }

  /** Inserts the faces and returns, for each, the earlier faces it matches. */
  async addAndMatch(imageHash: string, faces: NewFace[], threshold: number): Promise<{ faceId: string; seq: number; matches: FaceMatch[] }[]> {
    const seqs = await this.store.insertFaces(imageHash, faces);
    await this.sync(Math.max(0, ...seqs));
    return faces.map((face, i) => ({
      faceId: face.faceId,
      seq: seqs[i],
      matches: this.matrix.search(face.embedding, seqs[i], imageHash, threshold).map((m) => ({ ...m, similarity: Math.round(m.similarity * 10000) / 10000 })),
    }));
  }

  /** Applies the log until it has seen `untilSeq` (or everything). One sync at a time. */
  private async sync(untilSeq: number): Promise<void> {
    while (this.matrix.lastSeq < untilSeq) {
      if (this.syncing) {
        await this.syncing;
        continue;
      }
      let progressed = false;
      this.syncing = (async () => {
        const entries = await this.store.readLog(this.matrix.lastSeq);
        for (const entry of entries) {
          if (entry.op === 'add') this.matrix.add(entry.seq, entry.faceId, entry.imageHash, entry.embedding);
          else this.matrix.remove(entry.seq, entry.faceIds);
        }
        progressed = entries.length > 0;
      })();
      try {
        await this.syncing;
      } finally {
        this.syncing = undefined;
      }
      if (!progressed) {
        // The log has nothing newer (entries up to untilSeq were deleted): we are current.
        if (untilSeq !== Infinity) this.matrix.lastSeq = Math.max(this.matrix.lastSeq, untilSeq);
        return;
      }
    }
  }
}
