/**
 * Every Redis key this product writes outside BullMQ's own `<prefix>:<queue>:*` keys.
 * docs/ARCHITECTURE.md lists them; keep the two in step.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** Raw image bytes of a synchronous request, read once by the worker (string, TTL). */
  blob(jobId: string): string {
    return `${this.prefix}:blob:${jobId}`;
  }

  /** A worker's heartbeat: its id, pid, loaded models (string JSON, TTL a few heartbeats). */
  worker(workerId: string): string {
    return `${this.prefix}:worker:${workerId}`;
  }

  /** One model's result (or permanent failure) for one image: AnalysisRecord JSON, TTL RESULT_TTL_SECONDS. */
  result(imageHash: string, model: string): string {
    return `${this.prefix}:result:${imageHash}:${model}`;
  }

  /** Image metadata (ImageMetadata fields), kept as long as the stored image. */
  image(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}`;
  }

  /** The set of models ever requested for an image (what GET /v1/images/:hash reports). */
  imageModels(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}:models`;
  }

  /** Pub/sub channel: a model finished for this image (message: model name). */
  imageEvents(imageHash: string): string {
    return `${this.prefix}:events:image:${imageHash}`;
  }

  /** Face index: sequence counter and the append-only log of added faces and tombstones (stream, id <seq>-1). */
  faceSeq(): string {
    return `${this.prefix}:faces:seq`;
  }

  faceLog(): string {
    return `${this.prefix}:faces:log`;
  }

  /** One face: image hash, seq, box, landmarks, score (hash). */
  face(faceId: string): string {
    return `${this.prefix}:face:${faceId}`;
  }

  /** A face's matches: other face id → cosine similarity (zset). */
  faceMatches(faceId: string): string {
    return `${this.prefix}:face:${faceId}:matches`;
  }

  /** An image's face-matching record (JSON: face ids, skipped faces); present once the image was processed. */
  imageFaces(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}:faces`;
  }

  /** An image's match set: other image hash → best similarity (zset), kept symmetric. */
  imageMatches(imageHash: string): string {
    return `${this.prefix}:image:${imageHash}:matches`;
  }

  workerPattern(): string {
    return `${this.prefix}:worker:*`;
  }
}

/** What a worker publishes in its heartbeat key. */
export interface WorkerHeartbeat {
  workerId: string;
  pid: number;
  host: string;
  startedAt: number;
  models: string[];
  /** Event-loop delay p99 (ms) over the last heartbeat interval. */
  eventLoopDelayP99Ms: number;
}
