import { z } from 'zod';

/**
 * models/manifest.json: one entry per model. Adding a model is an entry here; a new task type is one
 * post-processor registered in postprocess/index.ts.
 */
const tripleSchema = z.tuple([z.number(), z.number(), z.number()]);

export const preprocessSchema = z.object({
  /**
   * face-align: warp 5 landmarks onto the ArcFace template (the face pipeline does this; needs a detector first).
   * center-crop: resize the shorter side to `shorterSide`, then take the centred width×height. stretch: resize to
   * width×height ignoring aspect. letterbox: fit inside width×height keeping the aspect ratio, pad right/bottom.
   * The geometry of each is planned in input-geometry.ts.
   */
  resize: z.enum(['center-crop', 'stretch', 'letterbox', 'face-align']),
  /** The input size; for a model with a dynamic input (shape −1), the box the image is fitted into. */
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  shorterSide: z.number().int().positive().optional(),
  /** Dynamic-input letterbox: pad the resized image only up to the next multiple of this (e.g. a network's largest stride). */
  padToMultipleOf: z.number().int().positive().optional(),
  /** letterbox: enlarge an image smaller than width×height to fit it (false: keep its own size, as OpenCV's YuNet sample does). */
  enlarge: z.boolean().default(true),
  /**
   * letterbox: shrink no more than this factor while the result still fits width×height, and never below a long
   * side of `minLongSide` (a detector then sees a large photo's small faces at a third of their size at worst,
   * without paying for a large input on a small photo).
   */
  maxShrink: z.number().min(1).optional(),
  minLongSide: z.number().int().positive().optional(),
  padValue: z.number().min(0).max(255).default(0),
  /** Channel order of the tensor. */
  channels: z.enum(['RGB', 'BGR']),
  /** tensor = (pixel * scale - mean[c]) / std[c], with mean and std in the tensor's channel order. */
  scale: z.number().default(1),
  mean: tripleSchema.default([0, 0, 0]),
  std: tripleSchema.default([1, 1, 1]),
});
export type PreprocessSpec = z.infer<typeof preprocessSchema>;

export const modelTaskSchema = z.enum(['classification', 'object-detection', 'face-detection', 'face-embedding']);
export type ModelTask = z.infer<typeof modelTaskSchema>;

export const manifestEntrySchema = z.object({
  name: z.string().regex(/^[a-z0-9_]+$/),
  description: z.string(),
  task: modelTaskSchema,
  file: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  input: z.object({
    name: z.string(),
    dtype: z.enum(['float32', 'float16']),
    /** NCHW; −1 is a dynamic dimension (batch, or height and width together for a fully convolutional detector). */
    shape: z.tuple([z.number().int(), z.literal(3), z.number().int().min(-1), z.number().int().min(-1)]).refine(([, , h, w]) => h !== 0 && w !== 0 && (h > 0) === (w > 0), 'height and width are both positive or both -1 (dynamic)'),
  }),
  outputs: z.array(z.string()).min(1),
  preprocess: preprocessSchema,
  postprocess: z.object({
    /** classification: `softmax` when the output is logits, `none` when it already holds probabilities. */
    activation: z.enum(['softmax', 'none']).default('none'),
    /** detection: keep boxes scoring at least this, then NMS at this IoU. */
    scoreThreshold: z.number().min(0).max(1).default(0.3),
    iouThreshold: z.number().min(0).max(1).default(0.45),
    /** face detection: the score a face must reach again on a crop around it (the worker's second stage). */
    confirmScoreThreshold: z.number().min(0).max(1).optional(),
  }),
  labels: z.string().optional(),
  batch: z.object({ maxSize: z.number().int().min(1).default(8), maxDelayMs: z.number().min(0).default(2) }).default({ maxSize: 8, maxDelayMs: 2 }),
  licence: z.string(),
  source: z.string(),
});
export type ManifestEntry = z.infer<typeof manifestEntrySchema>;

export const manifestSchema = z.object({ models: z.array(manifestEntrySchema).min(1) });
