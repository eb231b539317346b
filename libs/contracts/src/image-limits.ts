/** Raster formats the product accepts (as named by libvips/sharp). SVG, PDF and other vector or document formats are refused. */
export const ACCEPTED_IMAGE_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'] as const;
export type AcceptedImageFormat = (typeof ACCEPTED_IMAGE_FORMATS)[number];

/** Content types accepted as a raw request body. */
export const RAW_IMAGE_CONTENT_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/avif'];

export const TOPK_MIN = 1;
export const TOPK_MAX = 20;
export const TOPK_DEFAULT = 5;
