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

export function matchFacesJobId(imageHash: string): string {
  return `faces-${imageHash}`;
}

/** Deterministic job id: the same (image, model) pair is one job, whichever API adds it and however often. */
export function analyzeJobId(imageHash: string, model: string): string {
  return `an-${imageHash}-${model}`;
}

/**
 * BullMQ priorities (lower runs first). Synchronous requests, where a client holds a connection,
 * go ahead of bulk work that is fetched later.
 */
export const JobPriority = {
  Interactive: 1,
  Bulk: 10,
} as const;
