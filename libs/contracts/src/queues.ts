import { TenantId, tenantScopedId } from './tenant';

/** The one BullMQ queue that carries image-inference work from the API to the workers. */
export const INFERENCE_QUEUE = 'inference';

/** Job names on INFERENCE_QUEUE; the worker dispatches on these. */
export enum InferenceJobName {
  Classify = 'classify',
  /**
   * Several classify requests for one model, coalesced by an API whose earlier classify jobs of that model are
   * still in flight: one queue round trip for up to CLASSIFY_COALESCE_MAX images (ClassifyBatchJobData).
   */
  ClassifyBatch = 'classify-batch',
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

/**
 * The id a request of a coalesced classify job answers to (202 Location, GET /v1/jobs/:id): the batch job's
 * UUID and the item's index, `<uuid>.<index>`.
 */
export function classifyItemId(batchJobId: string, index: number): string {
  return `${batchJobId}.${index}`;
}

/** A classify request's id: a job's UUID, or `<uuid>.<index>` for one item of a classify-batch job. */
export const CLASSIFY_ID = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\.(0|[1-9][0-9]{0,3}))?$/;

/** The job id and item index (undefined: a single classify job) of a classify request id, or undefined when it is not one. */
export function parseClassifyId(id: string): { jobId: string; index?: number } | undefined {
  const match = CLASSIFY_ID.exec(id);
  if (!match) return undefined;
  return { jobId: match[1], index: match[2] === undefined ? undefined : Number(match[2]) };
}
