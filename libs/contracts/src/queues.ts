/** The one BullMQ queue that carries image-inference work from the API to the workers. */
export const INFERENCE_QUEUE = 'inference';

/** Job names on INFERENCE_QUEUE; the worker dispatches on these. */
export enum InferenceJobName {
  Classify = 'classify',
}

/**
 * BullMQ priorities (lower runs first). Synchronous requests, where a client holds a connection,
 * go ahead of bulk work that is fetched later.
 */
export const JobPriority = {
  Interactive: 1,
  Bulk: 10,
} as const;
