import { alignFaceTensor, decodeRgb, prepareModelInput } from '@app/imaging';
import { decodeYunet, FaceDetection, ModelCatalog, ModelExecutor, unitLength } from '@app/models';

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
  maxPixels: number;
}

/**
 * Detect (YuNet, 5 landmarks) → align to the ArcFace template → embed (MobileFaceNet) → L2-normalise.
 * The embeddings of one image's faces run as one batch.
 */
export class FacePipeline {
  constructor(
    private readonly catalog: ModelCatalog,
    private readonly executor: ModelExecutor,
    private readonly options: FacePipelineOptions,
  ) {}

  async run(bytes: Buffer): Promise<FacePipelineResult> {
    const detector = this.catalog.get(this.options.detector, 'face-detection');
    const embedder = this.catalog.get(this.options.embedder, 'face-embedding');
    const [input, decoded] = await Promise.all([prepareModelInput(bytes, detector.preprocess, this.options.maxPixels), decodeRgb(bytes, this.options.maxPixels)]);
    const detected = await this.executor.run(detector.name, input.tensor);
    const geometry = { inputWidth: detector.preprocess.width, inputHeight: detector.preprocess.height, scaleX: input.scaleX, scaleY: input.scaleY };
    const all = decodeYunet(detected.output, geometry, detector.postprocess.scoreThreshold, detector.postprocess.iouThreshold);
    const kept = all.filter((face) => Math.min(face.box.width, face.box.height) >= this.options.minFaceSize);
    const skipped = all.filter((face) => !kept.includes(face));
    const embeddings = await Promise.all(
      kept.map(async (face) => {
        const run = await this.executor.run(embedder.name, alignFaceTensor(decoded, face.landmarks));
        return unitLength(run.output[embedder.outputs[0]]);
      }),
    );
    return { faces: kept.map((face, i) => ({ ...face, embedding: embeddings[i] })), skipped, width: decoded.width, height: decoded.height };
  }
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
  return dot;
}
