import { DecodedImage, DecodeLimits, decodeRgb, ModelInput, modelInputFromPixels, prepareModelInput } from '@app/imaging';
import { Box, CatalogModel, decodeYunet, FaceDetection, InputGeometry, iou, ModelExecutor, nonMaxSuppression, planInput, planRegion } from '@app/models';

/**
 * The second pass's crop: a square this many times the face's longer box side, centred on the face, so the
 * detector sees the whole head with some context (YuNet was trained on whole scenes, not tight crops).
 */
export const REFINE_CONTEXT = 2;
/** The second pass's input side (a multiple of YuNet's largest stride, 32): every face is seen at about 80 px. */
export const REFINE_SIZE = 160;
/**
 * Second-stage passes per face at most, each on a crop around the last box, so the box converges to one that
 * depends on the face and not on the first pass (bench faces-quality: largest box error over canvases and
 * panoramas 0.12 with two, 0.085 with three). The faces of one round share one batch.
 */
const REFINE_ROUNDS = 3;
/** A second-stage face is the same face when its box overlaps the last box at least this much. */
const SAME_FACE_IOU = 0.3;
/** A face whose box moved less than this (IoU with the last box) has settled: no further pass for it. */
const CONVERGED_IOU = 0.95;

/**
 * YuNet face detection (boxes and five landmarks, in image pixels) in two stages over one full-resolution decode:
 * 1. the whole image, letterboxed as the manifest says (aspect ratio kept, never enlarged, shrunk at most 3× to a
 *    long side of 640–1024 px, padded only to a multiple of 32, so a panorama is neither squashed nor padded to a
 *    square): finds the faces;
 * 2. for each face, a square crop around it (REFINE_CONTEXT × its size) resampled from the original pixels to
 *    REFINE_SIZE, REFINE_ROUNDS times (each crop around the last box): the face is always seen at about the same
 *    size, so its box and landmarks are as precise in a 12-megapixel group shot as in a portrait, and the same
 *    face gets the same box whatever canvas it sits in.
 * A face is kept only if the second stage finds it again, scoring at least the manifest's confirmScoreThreshold
 * there: seen at about 80 px, every real face of the fixtures scores ≥ 0.88, while the background patches the
 * first stage takes for faces in the bench canvases score 0.72–0.79. Faces are returned best score first.
 * Measured by `npm run bench -- faces-quality` (README, "Faces in photos as people take them").
 */
export class FaceDetector {
  constructor(
    private readonly executor: ModelExecutor,
    private readonly model: CatalogModel,
  ) {
    if (model.task !== 'face-detection') throw new Error(`${model.name} is a ${model.task} model, not a face detector`);
  }

  /**
   * Decodes the bytes at full resolution and, in parallel from the same bytes, the first pass's input (JPEG
   * shrink-on-load makes it cheap), both under the one decode policy; then detects. The image is returned for
   * alignment from its original pixels.
   */
  async decodeAndDetect(bytes: Buffer, limits: DecodeLimits): Promise<{ image: DecodedImage; faces: FaceDetection[] }> {
    const [image, whole] = await Promise.all([decodeRgb(bytes, limits), prepareModelInput(bytes, this.model.preprocess, limits)]);
    return { image, faces: await this.detect(image, whole) };
  }

  /**
   * `image` is the full-resolution decode; `whole`, if given, is the first pass's input already made from the
   * same bytes (prepareModelInput, e.g. with JPEG shrink-on-load while the full decode runs), else it is made here.
   */
  async detect(image: DecodedImage, whole?: ModelInput): Promise<FaceDetection[]> {
    const first = whole ?? { geometry: planInput(image.width, image.height, this.model.preprocess), tensor: undefined };
    const tensor = first.tensor ?? (await modelInputFromPixels(image, first.geometry, this.model.preprocess));
    let faces = (await this.run([{ tensor, geometry: first.geometry }]))[0];
    const settled = faces.map(() => false);
    const confirmed = faces.map(() => false);
    for (let round = 0; round < REFINE_ROUNDS; round++) {
      const open = faces.map((_, i) => i).filter((i) => !settled[i]);
      const geometries = open.map((i) => planRegion(image.width, image.height, cropAround(faces[i].box), REFINE_SIZE));
      const tensors = await Promise.all(geometries.map((geometry) => modelInputFromPixels(image, geometry, this.model.preprocess)));
      // Every face's crop of this round goes in at once, so they share one batch.
      const found = await this.run(tensors.map((crop, k) => ({ tensor: crop, geometry: geometries[k] })));
      faces = faces.map((face, i) => {
        const k = open.indexOf(i);
        if (k < 0) return face;
        const best = found[k].map((candidate) => ({ candidate, overlap: iou(candidate.box, face.box) })).sort((a, b) => b.overlap - a.overlap)[0];
        // Not found again: the face keeps its last box and is not looked at again.
        if (!best || best.overlap < SAME_FACE_IOU) {
          settled[i] = true;
          return face;
        }
        confirmed[i] = true;
        // Converged: another crop around the same box would see the same pixels.
        if (best.overlap >= CONVERGED_IOU) settled[i] = true;
        return best.candidate;
      });
    }
    // A face must be found again on its own crop, where every face is seen at its best size, and score there.
    const { confirmScoreThreshold = 0, iouThreshold } = this.model.postprocess;
    return nonMaxSuppression(
      faces.filter((face, i) => confirmed[i] && face.score >= confirmScoreThreshold),
      iouThreshold,
    );
  }

  /** Runs the detector on each input (submitted together, so they batch) and decodes its faces in image pixels. */
  private async run(inputs: { tensor: Float32Array; geometry: InputGeometry }[]): Promise<FaceDetection[][]> {
    const runs = await Promise.all(inputs.map(({ tensor, geometry }) => this.executor.run(this.model.name, tensor, geometry)));
    const { scoreThreshold, iouThreshold } = this.model.postprocess;
    return runs.map((run, i) => decodeYunet(run.output, inputs[i].geometry, scoreThreshold, iouThreshold));
  }
}

/** The square region (image pixels, may reach past the edges) the second pass looks at for a face box. */
export function cropAround(box: Box): Box {
  const side = REFINE_CONTEXT * Math.max(box.width, box.height);
  return { x: box.x + box.width / 2 - side / 2, y: box.y + box.height / 2 - side / 2, width: side, height: side };
}
