import { Box, InputGeometry, toImageBox, toImagePoint } from '../input-geometry';

/**
 * Decoders for detection models. Boxes and landmarks come back in original-image pixels, mapped through the
 * input's geometry (scale and padding or crop offset, see input-geometry.ts).
 */

export interface ObjectDetection {
  label: string;
  classIndex: number;
  score: number;
  box: Box;
}

export interface FaceDetection {
  score: number;
  box: Box;
  /** image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner */
  landmarks: [number, number][];
}

export function iou(a: Box, b: Box): number {
  const x1 = Math.max(a.x, b.x);
  const y1 = Math.max(a.y, b.y);
  const x2 = Math.min(a.x + a.width, b.x + b.width);
  const y2 = Math.min(a.y + a.height, b.y + b.height);
  const intersection = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  const union = a.width * a.height + b.width * b.height - intersection;
  return union > 0 ? intersection / union : 0;
}

/** Greedy hard NMS, best score first; `sameGroup` limits suppression (e.g. to the same class). */
export function nonMaxSuppression<T extends { score: number; box: Box }>(items: T[], iouThreshold: number, sameGroup: (a: T, b: T) => boolean = () => true): T[] {
  const sorted = [...items].sort((a, b) => b.score - a.score);
  const kept: T[] = [];
  for (const candidate of sorted) {
    if (!kept.some((keptItem) => sameGroup(keptItem, candidate) && iou(keptItem.box, candidate.box) > iouThreshold)) kept.push(candidate);
  }
  return kept;
}

const round2 = (value: number) => Math.round(value * 100) / 100;
const roundScore = (value: number) => Math.round(value * 10000) / 10000;

function toOriginal(box: Box, geometry: InputGeometry): Box {
  const mapped = toImageBox(geometry, box);
  return { x: round2(mapped.x), y: round2(mapped.y), width: round2(mapped.width), height: round2(mapped.height) };
}

/**
 * YOLOX: rows `[dx, dy, dw, dh, obj, 80 class scores]` for strides 8, 16, 32 in row-major grid order;
 * obj and class scores are already sigmoided. Per-class NMS.
 */
export function decodeYolox(output: Float32Array, geometry: InputGeometry, labels: string[], scoreThreshold: number, iouThreshold: number, strides = [8, 16, 32]): ObjectDetection[] {
  const classes = labels.length;
  const rowSize = 5 + classes;
  const detections: ObjectDetection[] = [];
  let row = 0;
  for (const stride of strides) {
    const gridW = Math.floor(geometry.inputWidth / stride);
    const gridH = Math.floor(geometry.inputHeight / stride);
    for (let gy = 0; gy < gridH; gy++) {
      for (let gx = 0; gx < gridW; gx++, row++) {
        const base = row * rowSize;
        if (base + rowSize > output.length) break;
        const objectness = output[base + 4];
        if (objectness < scoreThreshold) continue;
        let best = 0;
        let bestScore = -Infinity;
        for (let c = 0; c < classes; c++) {
          const score = output[base + 5 + c];
          if (score > bestScore) {
            bestScore = score;
            best = c;
          }
        }
        const score = objectness * bestScore;
        if (score < scoreThreshold) continue;
        const cx = (output[base] + gx) * stride;
        const cy = (output[base + 1] + gy) * stride;
        const w = Math.exp(output[base + 2]) * stride;
        const h = Math.exp(output[base + 3]) * stride;
        detections.push({ label: labels[best], classIndex: best, score: roundScore(score), box: toOriginal({ x: cx - w / 2, y: cy - h / 2, width: w, height: h }, geometry) });
      }
    }
  }
  return nonMaxSuppression(detections, iouThreshold, (a, b) => a.classIndex === b.classIndex);
}

/**
 * YuNet (as OpenCV's FaceDetectorYN): per stride s, outputs cls_s, obj_s [N,1], bbox_s [N,4], kps_s [N,10]
 * with N = (H/s)(W/s) anchors in row-major order. score = sqrt(cls·obj).
 */
export function decodeYunet(outputs: Record<string, Float32Array>, geometry: InputGeometry, scoreThreshold: number, iouThreshold: number, strides = [8, 16, 32]): FaceDetection[] {
  const faces: FaceDetection[] = [];
  for (const stride of strides) {
    const cls = outputs[`cls_${stride}`];
    const obj = outputs[`obj_${stride}`];
    const bbox = outputs[`bbox_${stride}`];
    const kps = outputs[`kps_${stride}`];
    if (!cls || !obj || !bbox || !kps) throw new Error(`YuNet output for stride ${stride} is missing`);
    const cols = Math.floor(geometry.inputWidth / stride);
    for (let i = 0; i < cls.length; i++) {
      const score = Math.sqrt(clamp01(cls[i]) * clamp01(obj[i]));
      if (score < scoreThreshold) continue;
      const row = Math.floor(i / cols);
      const col = i % cols;
      const cx = (col + bbox[i * 4]) * stride;
      const cy = (row + bbox[i * 4 + 1]) * stride;
      const w = Math.exp(bbox[i * 4 + 2]) * stride;
      const h = Math.exp(bbox[i * 4 + 3]) * stride;
      const landmarks: [number, number][] = [];
      for (let k = 0; k < 5; k++) {
        const [x, y] = toImagePoint(geometry, [(kps[i * 10 + 2 * k] + col) * stride, (kps[i * 10 + 2 * k + 1] + row) * stride]);
        landmarks.push([round2(x), round2(y)]);
      }
      faces.push({ score: roundScore(score), box: toOriginal({ x: cx - w / 2, y: cy - h / 2, width: w, height: h }, geometry), landmarks });
    }
  }
  return nonMaxSuppression(faces, iouThreshold);
}

function clamp01(value: number): number {
  return Math.min(1, Math.max(0, value));
}
