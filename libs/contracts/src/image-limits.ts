/** Raster formats the product accepts (AVIF and HEIC are the AV1 and HEVC members of the HEIF family). SVG, PDF and other vector or document formats are refused. */
export const ACCEPTED_IMAGE_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif', 'heic'] as const;
export type AcceptedImageFormat = (typeof ACCEPTED_IMAGE_FORMATS)[number];

/**
 * Content types accepted as a raw request body. The label is only a hint: the format is read from the bytes
 * (readImage), so the common wrong or generic labels clients send are accepted too — `application/octet-stream`
 * (curl --data-binary with -H for a file of unknown type, many HTTP libraries' default), `image/jpg` and
 * `image/pjpeg` (old browsers and Windows), `image/x-png`, and `image/heic-sequence` (some iPhone exports).
 */
export const RAW_IMAGE_CONTENT_TYPES = [
  'image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/avif', 'image/heic', 'image/heif',
  'image/jpg', 'image/pjpeg', 'image/x-png', 'image/heic-sequence', 'image/heif-sequence', 'application/octet-stream',
];

export const TOPK_MIN = 1;
export const TOPK_MAX = 20;
export const TOPK_DEFAULT = 5;
