import { Inject, Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { faceIdStem, MatchFacesJobData } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { AnalysisStore, FaceStore, NewFace } from '@app/storage';
import { ImageSource } from '../inference/image-source';
import { ModelHost } from '../inference/model-host';
import { FaceIndex } from './face-index';
import { FacePipeline } from './face-pipeline';

export interface MatchFacesResult {
  faces: number;
  matches: number;
  reused: boolean;
  batchSize: number;
  /** The image was erased before or while the job ran: nothing was written. */
  erased?: boolean;
}

/**
 * match-faces jobs: detect, embed and match every face of one tenant's stored image against that tenant's
 * faces, record matches on both sides. Idempotent: an image already processed is not processed again, and
 * face ids are derived from the tenant and image hash, so a redelivered job inserts nothing new. An image
 * erased meanwhile ends the job quietly with nothing written back.
 */
@Injectable()
export class MatchFacesHandler {
  private pipeline?: FacePipeline;

  constructor(
    private readonly models: ModelHost,
    private readonly images: ImageSource,
    private readonly faces: FaceStore,
    private readonly results: AnalysisStore,
    private readonly index: FaceIndex,
    private readonly config: AppConfig,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async handle(job: Job<MatchFacesJobData>): Promise<MatchFacesResult> {
    const { tenant, imageHash } = job.data;
    if (await this.faces.hasImageFaces(tenant, imageHash)) return { faces: 0, matches: 0, reused: true, batchSize: 0 };
    if (!(await this.results.hasImage(tenant, imageHash))) return this.erased(job);
    const env = this.config.values;
    this.pipeline ??= new FacePipeline(this.models.catalog, this.models.executor, {
      detector: env.FACE_DETECTOR,
      embedder: env.FACE_EMBEDDER,
      minFaceSize: env.FACE_MIN_SIZE,
      limits: this.config.imageLimits,
    });
    let bytes: Buffer;
    try {
      bytes = await this.images.read({ kind: 'store', tenant, hash: imageHash });
    } catch (error) {
      if (!(await this.results.hasImage(tenant, imageHash))) return this.erased(job);
      throw error;
    }
    const found = await this.pipeline.run(bytes);
    const stem = faceIdStem(tenant, imageHash);
    const newFaces: NewFace[] = found.faces.map((face, i) => ({
      faceId: `${stem}-${i}`,
      box: face.box,
      landmarks: face.landmarks,
      score: face.score,
      embedding: face.embedding,
    }));
    const matched = await this.index.addAndMatch(tenant, imageHash, newFaces, env.FACE_MATCH_THRESHOLD);
    if (!matched) return this.erased(job);
    const pairs = matched.flatMap((face) => face.matches.map((match) => ({ faceId: face.faceId, match })));
    const record = {
      faceIds: newFaces.map((face) => face.faceId),
      skippedFaces: found.skipped.map((face) => ({ box: face.box, score: face.score, reason: `smaller than FACE_MIN_SIZE (${env.FACE_MIN_SIZE}px)` })),
      computedAt: new Date().toISOString(),
    };
    if (!(await this.faces.finishImage(tenant, imageHash, record, pairs))) return this.erased(job);
    this.logger.info(
      {
        action: 'faces.matched',
        jobId: job.id,
        requestId: job.data.requestId,
        tenant,
        imageHash,
        faces: newFaces.length,
        skipped: found.skipped.length,
        matches: pairs.length,
        indexSize: this.index.size,
        checkedFromIndex: matched.reduce((sum, face) => sum + face.checked, 0),
      },
      'faces detected, embedded and matched',
    );
    return { faces: newFaces.length, matches: pairs.length, reused: false, batchSize: newFaces.length };
  }

  private erased(job: Job<MatchFacesJobData>): MatchFacesResult {
    this.logger.info({ action: 'faces.skipped_erased', jobId: job.id, requestId: job.data.requestId, tenant: job.data.tenant, imageHash: job.data.imageHash }, 'image or its faces erased; nothing written');
    return { faces: 0, matches: 0, reused: false, batchSize: 0, erased: true };
  }
}
