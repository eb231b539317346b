import { alignFaceTensor, DecodeLimits } from '@app/imaging';
import { CatalogModel, FaceDetection, ModelCatalog, ModelExecutor, unitLength } from '@app/models';
import { FaceDetector } from './face-detector';

export interface EmbeddedFace extends FaceDetection {
  /** L2-normalised embedding. */
  embedding: Float32Array;
}

export interface FacePipelineResult {
  faces: EmbeddedFace[];
  /** Faces found but smaller than the minimum (their boxes), not embedded or matched. */
  skipped: FaceDetection[];
  width: number;
  height: number;
}

export interface FacePipelineOptions {
  detector: string;
  embedder: string;
  /** Faces whose shorter box side is below this (original pixels) are skipped. */
  minFaceSize: number;
  limits: DecodeLimits;
}

/**
 * Decode once at full resolution → detect (YuNet: whole image, then a crop around each face; FaceDetector) →
 * align each face onto the ArcFace template from the original pixels → embed (MobileFaceNet) → L2-normalise.
 * The embeddings of one image's faces run as one batch.
 */
export class FacePipeline {
  private readonly detector: FaceDetector;
  private readonly embedder: CatalogModel;

  constructor(
    catalog: ModelCatalog,
    private readonly executor: ModelExecutor,
    private readonly options: FacePipelineOptions,
  ) {
    this.detector = new FaceDetector(executor, catalog.get(options.detector, 'face-detection'));
    this.embedder = catalog.get(options.embedder, 'face-embedding');
  }

  async run(bytes: Buffer): Promise<FacePipelineResult> {
    const { image, faces: all } = await this.detector.decodeAndDetect(bytes, this.options.limits);
    const kept = all.filter((face) => Math.min(face.box.width, face.box.height) >= this.options.minFaceSize);
    const skipped = all.filter((face) => !kept.includes(face));
    const embeddings = await Promise.all(
      kept.map(async (face) => {
        const run = await this.executor.run(this.embedder.name, alignFaceTensor(image, face.landmarks));
        return unitLength(run.output[this.embedder.outputs[0]]);
      }),
    );
    return { faces: kept.map((face, i) => ({ ...face, embedding: embeddings[i] })), skipped, width: image.width, height: image.height };
  }
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
  return dot;
}
