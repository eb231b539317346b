import { Inject, Injectable } from '@nestjs/common';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { MatchFacesJobData } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { FaceStore, NewFace } from '@app/storage';
import { ImageSource } from '../inference/image-source';
import { ModelHost } from '../inference/model-host';
import { FaceIndex } from './face-index';
import { FacePipeline } from './face-pipeline';

/**
 * match-faces jobs: detect, embed and match every face of a stored image, record matches on both sides.
 * Idempotent: an image already processed is not processed again, and face ids are derived from the image
 * hash, so a redelivered job inserts nothing new.
 */
@Injectable()
export class MatchFacesHandler {
  private pipeline?: FacePipeline;

  constructor(
    private readonly models: ModelHost,
    private readonly images: ImageSource,
    private readonly faces: FaceStore,
    private readonly index: FaceIndex,
    private readonly config: AppConfig,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  async handle(job: Job<MatchFacesJobData>): Promise<{ faces: number; matches: number; reused: boolean; batchSize: number }> {
    const { imageHash } = job.data;
    if (await this.faces.hasImageFaces(imageHash)) return { faces: 0, matches: 0, reused: true, batchSize: 0 };
    const env = this.config.values;
    this.pipeline ??= new FacePipeline(this.models.catalog, this.models.executor, {
      detector: env.FACE_DETECTOR,
      embedder: env.FACE_EMBEDDER,
      minFaceSize: env.FACE_MIN_SIZE,
      limits: this.config.imageLimits,
    });
    const bytes = await this.images.read({ kind: 'store', hash: imageHash });
    const found = await this.pipeline.run(bytes);
    const newFaces: NewFace[] = found.faces.map((face, i) => ({
      faceId: `${imageHash.slice(0, 24)}-${i}`,
      box: face.box,
      landmarks: face.landmarks,
      score: face.score,
      embedding: face.embedding,
    }));
    const matched = await this.index.addAndMatch(imageHash, newFaces, env.FACE_MATCH_THRESHOLD);
    const pairs = matched.flatMap((face) => face.matches.map((match) => ({ faceId: face.faceId, match })));
    await this.faces.recordMatches(imageHash, pairs);
    await this.faces.saveImageFaces(imageHash, {
      faceIds: newFaces.map((face) => face.faceId),
      skippedFaces: found.skipped.map((face) => ({ box: face.box, score: face.score, reason: `smaller than FACE_MIN_SIZE (${env.FACE_MIN_SIZE}px)` })),
      computedAt: new Date().toISOString(),
    });
    this.logger.info(
      { action: 'faces.matched', jobId: job.id, requestId: job.data.requestId, imageHash, faces: newFaces.length, skipped: found.skipped.length, matches: pairs.length, indexSize: this.index.matrix.size },
      'faces detected, embedded and matched',
    );
    return { faces: newFaces.length, matches: pairs.length, reused: false, batchSize: newFaces.length };
  }
}
