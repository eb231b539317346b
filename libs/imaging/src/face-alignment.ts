import { AppError, ErrorCode } from '@app/contracts';
import type { DecodedImage } from './image-decoder';

/** The ArcFace 112×112 five-point template (eyes, nose tip, mouth corners), as in insightface. */
export const ARCFACE_TEMPLATE: [number, number][] = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];

/** x' = a·x − b·y + tx,  y' = b·x + a·y + ty  (rotation + uniform scale + translation, no reflection). */
export interface Similarity {
  a: number;
  b: number;
  tx: number;
  ty: number;
}

/** Least-squares similarity transform mapping `from` onto `to` (Umeyama, 2-D, without reflection). */
export function estimateSimilarity(from: [number, number][], to: [number, number][]): Similarity {
  const n = from.length;
  let mfx = 0, mfy = 0, mtx = 0, mty = 0;
  for (let i = 0; i < n; i++) {
    mfx += from[i][0] / n;
    mfy += from[i][1] / n;
    mtx += to[i][0] / n;
    mty += to[i][1] / n;
  }
  // For 2-D similarity the closed form reduces to: a = Σ(x·u + y·v)/Σ|p|², b = Σ(x·v − y·u)/Σ|p|² on centred points.
  let sxx = 0, sab = 0, sba = 0;
  for (let i = 0; i < n; i++) {
    const x = from[i][0] - mfx;
    const y = from[i][1] - mfy;
    const u = to[i][0] - mtx;
    const v = to[i][1] - mty;
    sxx += x * x + y * y;
    sab += x * u + y * v;
    sba += x * v - y * u;
  }
  if (sxx === 0) throw new AppError(ErrorCode.ImageDecodeFailed, 'degenerate face landmarks');
  const a = sab / sxx;
  const b = sba / sxx;
  return { a, b, tx: mtx - (a * mfx - b * mfy), ty: mty - (b * mfx + a * mfy) };
}

/**
 * Warps the face onto the 112×112 template (bilinear sampling, black outside the image) and writes the
 * CHW float tensor: BGR order, (pixel − 127.5) / 127.5, as MobileFaceNet (PaddleX) expects.
 */
export function alignFaceTensor(image: DecodedImage, landmarks: [number, number][], size = 112): Float32Array {
  const forward = estimateSimilarity(landmarks, ARCFACE_TEMPLATE);
  // Inverse of [[a, −b], [b, a]] is [[a, b], [−b, a]] / (a² + b²).
  const det = forward.a * forward.a + forward.b * forward.b;
  const ia = forward.a / det;
  const ib = forward.b / det;
  const plane = size * size;
  const tensor = new Float32Array(plane * 3);
  const { data, width, height } = image;
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const du = u - forward.tx;
      const dv = v - forward.ty;
      const x = ia * du + ib * dv;
      const y = -ib * du + ia * dv;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const fx = x - x0;
      const fy = y - y0;
      const out = v * size + u;
      for (let c = 0; c < 3; c++) {
        const sample = (sx: number, sy: number) => (sx >= 0 && sy >= 0 && sx < width && sy < height ? data[(sy * width + sx) * 3 + c] : 0);
        const value =
          sample(x0, y0) * (1 - fx) * (1 - fy) + sample(x0 + 1, y0) * fx * (1 - fy) + sample(x0, y0 + 1) * (1 - fx) * fy + sample(x0 + 1, y0 + 1) * fx * fy;
        // tensor channel 0 = B, 1 = G, 2 = R
        tensor[(2 - c) * plane + out] = (value - 127.5) / 127.5;
      }
    }
  }
  return tensor;
}

