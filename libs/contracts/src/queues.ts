import { TenantId, tenantScopedId } from './tenant';

/** The one BullMQ queue that carries image-inference work from the API to the workers. */
export const INFERENCE_QUEUE = 'inference';

/** Job names on INFERENCE_QUEUE; the worker dispatches on these. */
export enum InferenceJobName {
  Classify = 'classify',
  /** One (image hash, model) pair of an analysis; result kept in the result store. */
  Analyze = 'analyze',
  /** Detect, embed and match every face of one stored image. */
  MatchFaces = 'match-faces',
}

/** One match-faces job per (tenant, image): concurrent submissions of the same image join it. */
export function matchFacesJobId(tenant: TenantId, imageHash: string): string {
  return `faces-${tenantScopedId(tenant, imageHash)}`;
}

/**
 * Deterministic job id: the same (tenant, image, model) triple is one job, whichever API adds it and however
 * often. Opaque (a digest), so the queue's event stream names no image hash and no tenant.
 */
export function analyzeJobId(tenant: TenantId, imageHash: string, model: string): string {
  return `an-${tenantScopedId(tenant, imageHash, model)}`;
}

/**
 * The id of the `index`-th face found in a tenant's image: `<24 hex of a digest of tenant and image>-<index>`.
 * Deterministic, so a redelivered job inserts nothing new, and erasure can find every face of an image by its
 * stem even before the image's face record is written.
 */
export function faceIdStem(tenant: TenantId, imageHash: string): string {
  return tenantScopedId(tenant, imageHash, 'faces').slice(0, 24);
}

/**
 * BullMQ priorities (lower runs first). Synchronous requests, where a client holds a connection,
 * go ahead of bulk work that is fetched later.
 */
export const JobPriority = {
  Interactive: 1,
  Bulk: 10,
} as const;
