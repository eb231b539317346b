import { cpus } from 'node:os';
import { z } from 'zod';
import { parseApiKeys } from './api-keys';
import { parseRedisUrl } from './redis-url';
import { parseHostPorts, redisTopologyProblems } from './redis-topology';

const int = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback);
const bool = (fallback: boolean) => z.stringbool().default(fallback);
const cores = Math.max(1, cpus().length);
/** A refinement that runs a parser and reports what it throws as the variable's problem. */
const parsedBy =
  (parse: (value: string) => unknown) =>
  (value: string, context: z.RefinementCtx): void => {
    try {
      parse(value);
    } catch (error) {
      context.addIssue({ code: 'custom', message: (error as Error).message });
    }
  };

/**
 * Every environment variable the product reads, with its default. README's configuration table mirrors this.
 * Parsed once at start; a bad value stops the process with a message naming the variable.
 */
export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  // HTTP (API)
  PORT: int(0, 65535, 3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  MAX_IMAGE_BYTES: int(1024, 1024 * 1024 * 1024, 10 * 1024 * 1024),
  MAX_IMAGE_PIXELS: int(1, 1_000_000_000, 50_000_000),
  /**
   * Accept HEIC (HEVC-coded HEIF, what phones save) and decode it with libheif (WebAssembly, LGPL-3.0) in a
   * worker thread. false: HEIC is refused with 415 like any unsupported format, and libheif decodes nothing.
   */
  HEIC_ENABLED: bool(true),
  /**
   * Longest side over shortest side an image may have. 50:1 lets through every panorama a phone or stitcher
   * makes (typically 2:1 to 8:1); past it no model input can be scaled from the image (a 1×50,000,000 PNG is
   * within the pixel limit, yet costs seconds of decoding per model for nothing).
   */
  MAX_IMAGE_ASPECT_RATIO: int(1, 100_000, 50),
  /** Frames (pages) an animated GIF/WebP or multi-page TIFF may declare; only the first is used, but thousands are a parsing cost and a common attack. */
  MAX_IMAGE_FRAMES: int(1, 100_000, 100),
  REQUEST_WAIT_MS: int(100, 10 * 60_000, 30_000),
  /**
   * HTTP time limits (API and the worker's port). Headers and the whole request must arrive within these totals
   * (Node's own defaults: 60 s and 300 s; nginx allows 60 s for headers); a connection may stay silent at most
   * HTTP_IDLE_TIMEOUT_MS while it owes the server bytes (nginx's client_body_timeout, 60 s), and an idle
   * keep-alive connection stays open HTTP_KEEP_ALIVE_TIMEOUT_MS (Fastify's 72 s: longer than the 60 s idle limit of
   * common load balancers, so the balancer closes first). A request that was received whole is never cut while it
   * is being answered (waiting up to REQUEST_WAIT_MS for its job, or an event stream).
   */
  HTTP_HEADERS_TIMEOUT_MS: int(100, 3600_000, 60_000),
  HTTP_REQUEST_TIMEOUT_MS: int(100, 3600_000, 300_000),
  HTTP_IDLE_TIMEOUT_MS: int(100, 3600_000, 60_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(100, 3600_000, 72_000),
  JOB_POLL_INTERVAL_MS: int(20, 60_000, 500),
  /** Off only to prove (in tests) that polling alone completes every request. */
  QUEUE_EVENTS_ENABLED: bool(true),

  /** Images one analysis request may carry, and the cap on a whole JSON body (base64 images inside). */
  MAX_IMAGES_PER_REQUEST: int(1, 1000, 16),
  MAX_JSON_BODY_BYTES: int(1024, 1024 * 1024 * 1024, 32 * 1024 * 1024),
  /** URLs one request may ask the API to fetch (POST /v1/analyses `urls`). */
  MAX_URLS_PER_REQUEST: int(1, 1000, 8),
  /**
   * Image bytes one API process holds at once while multi-image uploads and URL fetches are read, checked and
   * stored, across all requests: each image reserves MAX_IMAGE_BYTES first. 64 MiB = six 10 MiB images.
   */
  /**
   * API only: how far V8's old generation may grow past what the last full GC left, percent (V8's
   * --heap-growing-percent); 0 leaves V8's own factor. apps/api/src/heap-growth.ts has the measurements.
   */
  API_HEAP_GROWING_PERCENT: int(0, 1000, 100),
  MAX_UPLOAD_BYTES_IN_FLIGHT: int(1024 * 1024, 64 * 1024 * 1024 * 1024, 64 * 1024 * 1024),
  /** How long an image waits for room in that budget before the request gets 503 + Retry-After. */
  UPLOAD_BUDGET_WAIT_MS: int(0, 10 * 60_000, 10_000),
  /**
   * While uploads wait for budget, a body still arriving is judged after this long: one that cannot finish within
   * 60 s at its rate so far is cut (408), so slow bodies cannot hold the budget others wait for.
   */
  UPLOAD_RATE_GRACE_MS: int(0, 10 * 60_000, 1000),
  STORAGE_DIR: z.string().min(1).default('data/images'),
  RESULT_TTL_SECONDS: int(60, 365 * 24 * 3600, 7 * 24 * 3600),
  /** How long a permanent failure (e.g. an undecodable image) is remembered before it may be retried. */
  FAILED_RESULT_TTL_SECONDS: int(10, 30 * 24 * 3600, 3600),
  /**
   * Poison images: an image whose jobs for one model BullMQ failed as "stalled more than allowable limit" (each such
   * failure: the two workers that held the job died, or lost its lock) POISON_STALL_LIMIT times within
   * POISON_TTL_SECONDS is an image fault for that model (IMAGE_CRASHED_WORKER, 422) and is no longer given to
   * workers; the verdict lasts POISON_TTL_SECONDS after the last count. 2 × 2 = about four dead workers per image
   * and model, then none.
   */
  POISON_STALL_LIMIT: int(1, 100, 2),
  POISON_TTL_SECONDS: int(60, 30 * 24 * 3600, 24 * 3600),
  /**
   * TEST ONLY (the poison-image fault suite): a worker with this set SIGKILLs itself when it reads an image whose
   * sha256 is this hex digest, as a native crash in a decoder would kill it. Never set it in a deployment.
   */
  TEST_CRASH_ON_IMAGE_SHA256: z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 hex digest').optional(),
  SSE_MAX_MS: int(1000, 3600_000, 300_000),
  /** Event streams one tenant may hold open on one API process at once (more: 429). */
  SSE_MAX_PER_TENANT: int(1, 100_000, 50),

  /**
   * Cosine similarity at or above which two faces are the same person. Re-derived with the two-stage detector
   * (README "Face matching"): same person 0.69–0.97, different people ≤ 0.18 on the face fixtures; 0.45 leaves
   * 0.24 below the weakest true pair and 0.27 above the strongest impostor, erring towards fewer false matches.
   */
  FACE_MATCH_THRESHOLD: z.coerce.number().min(-1).max(1).default(0.45),
  FACE_MIN_SIZE: int(1, 10_000, 20),
  FACE_WAIT_MS: int(100, 10 * 60_000, 5000),
  /** Matches listed per face (and matching images per image) in an answer, strongest first; the stored sets stay complete. */
  FACE_MATCHES_MAX: int(1, 10_000, 100),
  FACE_DETECTOR: z.string().default('yunet'),
  FACE_EMBEDDER: z.string().default('mobilefacenet'),
  /**
   * A tenant with fewer faces is matched by the exact scan alone (no approximate index, nothing changes for
   * it); at and above it, faces settle into an HNSW index and the exact scan covers only the recent tail,
   * never more than this many faces. The bench's exact scan takes under 2 ms here, about what the index costs
   * with its Redis read of the candidates (README "Face matching at scale").
   */
  FACE_INDEX_MIN_FACES: int(1, 10_000_000, 20_000),
  /**
   * How long a face stays in a worker's exact tail after that worker first saw it, before it moves into the
   * index. Faces two workers insert at the same moment are therefore compared exactly (no pair missed).
   */
  FACE_TAIL_SETTLE_MS: int(0, 3600_000, 10_000),
  /** Faces moved into a tenant's index since its last snapshot file before a worker saves a new one. */
  FACE_SNAPSHOT_EVERY: int(1, 10_000_000, 20_000),
  /**
   * Nearest faces the first index search asks for (HNSW's search breadth, ef): more finds more of the weak
   * true pairs and costs time in proportion. README "Face matching at scale" has recall and time per width.
   */
  FACE_INDEX_SEARCH_WIDTH: int(16, 8192, 256),
  /**
   * How a tenant's face-index snapshots store faces: `pq` (FAISS HNSW with 32-byte product-quantisation codes,
   * loaded: about 190 bytes a face in a worker), `int8` (usearch HNSW with int8 vectors, memory-mapped: about
   * 380), or `auto`: `pq` where the FAISS binding was built (Debian's libfaiss-dev at npm run build), else `int8`.
   * `pq` on a machine without the binding stops the worker at start. Either reads the other's files.
   */
  FACE_INDEX_STORAGE: z.enum(['auto', 'pq', 'int8']).default('auto'),

  /** URL intake: hosts or CIDRs allowed even though private/loopback (comma list); everything else must be public. */
  FETCH_ALLOW_HOSTS: z.string().default(''),
  FETCH_CONNECT_TIMEOUT_MS: int(100, 60_000, 3000),
  FETCH_TIMEOUT_MS: int(100, 120_000, 10_000),
  FETCH_MAX_REDIRECTS: int(0, 10, 3),

  /** Back-pressure: waiting jobs beyond which new work is refused at once (503 + Retry-After). */
  MAX_QUEUE_DEPTH: int(1, 10_000_000, 1000),
  /**
   * Classify coalescing (API): while this API has CLASSIFY_COALESCE_IN_FLIGHT classify jobs of a model unanswered,
   * further requests for that model wait together and go as one `classify-batch` job of up to CLASSIFY_COALESCE_MAX
   * images, sent when full, when an earlier job of the model is answered, or CLASSIFY_COALESCE_DELAY_MS after the
   * group's first request at the latest. A request that finds fewer jobs in flight goes at once as a single job.
   * CLASSIFY_COALESCE_MAX=1 turns coalescing off.
   */
  CLASSIFY_COALESCE_MAX: int(1, 64, 8),
  CLASSIFY_COALESCE_IN_FLIGHT: int(1, 10_000, 2),
  CLASSIFY_COALESCE_DELAY_MS: int(0, 1000, 5),
  /** The worker's health/metrics port; unset: PORT + 1 (3001), so API and worker on one host never collide. */
  WORKER_HTTP_PORT: z.coerce.number().int().min(0).max(65535).optional(),

  /**
   * Comma list of `tenant:key` pairs or bare keys (a tenant of their own); when set, every route but health, docs
   * and metrics needs a key, and each tenant sees only its own records. Kept only as sha256 hashes.
   */
  API_KEYS: z.string().default('').superRefine(parsedBy(parseApiKeys)),
  /**
   * Which peers may set X-Forwarded-For (the client address used for rate limits without keys and for admin
   * login throttling): empty trusts none; a comma list of addresses or CIDRs (your proxies), or a hop count.
   */
  TRUST_PROXY: z
    .string()
    .default('')
    .refine((value) => value === '' || /^\d+$/.test(value) || value.split(',').every((entry) => /^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(entry.trim())), {
      message: 'a hop count, or a comma list of IP addresses or CIDRs',
    }),
  /** Requests per key (or per client address without keys) and route per RATE_LIMIT_WINDOW_MS; 0 turns limiting off. */
  RATE_LIMIT_MAX: int(0, 10_000_000, 6000),
  RATE_LIMIT_WINDOW_MS: int(1000, 3600_000, 60_000),

  /** bull-board at /admin/queues with HTTP Basic auth; off while ADMIN_PASSWORD is empty. */
  ADMIN_USER: z.string().default('admin'),
  ADMIN_PASSWORD: z.string().default(''),
  /** Failed dashboard logins one client address may make per ADMIN_LOGIN_WINDOW_MS before it is refused (429) until the window ends. */
  ADMIN_LOGIN_MAX_FAILURES: int(1, 1_000_000, 10),
  ADMIN_LOGIN_WINDOW_MS: int(1000, 24 * 3600_000, 15 * 60_000),

  // Redis and queue
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379').superRefine(parsedBy(parseRedisUrl)),
  /**
   * Redis Sentinel instead of REDIS_URL: comma list of sentinel `host:port` (port 26379 when left out). Every
   * connection of both apps asks the sentinels for the current primary of REDIS_SENTINEL_MASTER and follows it
   * after a failover. Refused beside REDIS_URL. REDIS_SENTINEL_PASSWORD: the sentinels' own `requirepass`;
   * REDIS_PASSWORD: the data nodes' (primary and replicas).
   */
  REDIS_SENTINELS: z.string().superRefine(parsedBy((value) => parseHostPorts(value, 'REDIS_SENTINELS', 26379))).optional(),
  REDIS_SENTINEL_MASTER: z.string().regex(/^[A-Za-z0-9._-]+$/).default('mymaster'),
  REDIS_SENTINEL_PASSWORD: z.string().optional(),
  REDIS_PASSWORD: z.string().optional(),
  /**
   * Redis Cluster instead of REDIS_URL: comma list of seed `host:port` (port 6379 when left out); the rest of the
   * cluster is discovered from them. Every connection of both apps is then an ioredis Cluster, which routes each
   * command to the primary of its key's slot and follows resharding and failovers. Refused beside REDIS_URL or
   * REDIS_SENTINELS, and with a QUEUE_PREFIX without braces. REDIS_PASSWORD: the nodes' password.
   */
  REDIS_CLUSTER_NODES: z.string().superRefine(parsedBy((value) => parseHostPorts(value, 'REDIS_CLUSTER_NODES', 6379))).optional(),
  /**
   * BullMQ needs Redis' maxmemory-policy `noeviction`: any other policy may evict queued jobs, image bytes and
   * results, and accepted work is lost silently. Both apps read the policy (INFO memory) at start and in readiness
   * and refuse another, unless this is true.
   */
  REDIS_ALLOW_EVICTION: bool(false),
  /**
   * API only: longest wait for one Redis reply on its own connection and its queue's (ms; 0: no limit). A Redis
   * that stops answering without closing its connections (a frozen process, a network partition, a VM paused)
   * otherwise holds every request until the kernel gives up on the socket; past this the request is answered 503
   * + Retry-After. Far above any reply the API waits for (its longest commands are bounded scans and scripts of
   * milliseconds); never applied to blocking reads (QueueEvents) or to the worker, whose commands may block.
   */
  REDIS_COMMAND_TIMEOUT_MS: int(0, 600_000, 5000),
  /**
   * BullMQ's key prefix. In braces (the default, `{iiq}`) it is a Redis Cluster hash tag: every key of the queue
   * hashes to one slot, as BullMQ's multi-key scripts require on a Cluster. Without braces (`iiq`, the layout before
   * Cluster support) the queue keeps its old keys on a single Redis or Sentinel, and a Cluster is refused. The
   * product's own keys use the name without braces (`iiq:…`) either way.
   */
  QUEUE_PREFIX: z
    .string()
    .regex(/^(\{[A-Za-z0-9_-]+\}|[A-Za-z0-9_-]+)$/, 'a name of letters, digits, _ and -, optionally in braces as a Redis Cluster hash tag: {iiq}')
    .default('{iiq}'),
  BLOB_TTL_SECONDS: int(10, 7 * 24 * 3600, 900),
  JOB_DEADLINE_MS: int(1000, 24 * 3600_000, 300_000),
  JOB_ATTEMPTS: int(1, 20, 3),
  COMPLETED_JOB_TTL_SECONDS: int(1, 30 * 24 * 3600, 3600),
  COMPLETED_JOB_MAX_COUNT: int(0, 1_000_000, 1000),
  FAILED_JOB_TTL_SECONDS: int(1, 30 * 24 * 3600, 24 * 3600),
  FAILED_JOB_MAX_COUNT: int(0, 1_000_000, 5000),
  EVENTS_MAX_LEN: int(0, 1_000_000, 10_000),

  // Worker
  MODELS_DIR: z.string().min(1).default('models'),
  WORKER_CONCURRENCY: int(1, 1024, 32),
  INFERENCE_THREADS: int(1, 64, 1),
  ORT_INTRA_OP_THREADS: int(1, 256, cores),
  /**
   * ONNX Runtime's intra-op threads spin (busy-wait) after each run waiting for the next one: its own default.
   * Off here: between a worker's runs there is decoding and queue work for the same cores, and spinning threads
   * take them (npm run bench measures both). On only for a host that does back-to-back model runs and nothing else.
   */
  ORT_ALLOW_SPINNING: bool(false),
  /** libvips threads per image. 1 by default: images decode in parallel on libuv's pool instead, which scales better and leaves cores for ONNX Runtime. */
  SHARP_CONCURRENCY: int(1, 256, 1),
  /** Overrides every model's manifest batch settings when set. */
  MAX_BATCH_SIZE: z.coerce.number().int().min(1).max(256).optional(),
  MAX_BATCH_DELAY_MS: z.coerce.number().min(0).max(1000).optional(),
  /**
   * BullMQ's job lock (renewed every half of it by the worker's event loop, which inference never blocks) and its
   * stalled-job check. A killed worker's jobs run again elsewhere within about LOCK_DURATION_MS +
   * STALLED_INTERVAL_MS (10 s with these defaults, against 60–90 s with BullMQ's 30 s / 30 s). The price: a worker
   * whose event loop stalls longer than the lock loses its jobs to another worker, which runs them again
   * (handlers are idempotent), and each worker runs the stalled check every 5 s (one Lua script).
   */
  LOCK_DURATION_MS: int(1000, 10 * 60_000, 5000),
  STALLED_INTERVAL_MS: int(1000, 10 * 60_000, 5000),
  WORKER_HEARTBEAT_MS: int(500, 60_000, 5000),
  /**
   * Stall watchdog: jobs waiting, none active on any worker, and this worker idle for this long (ms) means the
   * worker has silently stopped taking jobs (seen after failovers). 0 turns it off; otherwise at least three
   * LOCK_DURATION_MS. WORKER_STALL_ACTION: `reconnect` renews the worker's blocking connection (and exits if the
   * stall outlasts another timeout), `exit` exits with code 1 at once, for the supervisor to restart the worker.
   */
  WORKER_STALL_TIMEOUT_MS: int(0, 3600_000, 30_000),
  WORKER_STALL_ACTION: z.enum(['reconnect', 'exit']).default('reconnect'),
  SHUTDOWN_GRACE_MS: int(0, 10 * 60_000, 10_000),
})
  .superRefine((env, context) => {
    if (env.REDIS_CLUSTER_NODES !== undefined && !env.QUEUE_PREFIX.startsWith('{')) {
      context.addIssue({
        code: 'custom',
        path: ['QUEUE_PREFIX'],
        message: `"${env.QUEUE_PREFIX}" has no braces, and REDIS_CLUSTER_NODES is set: BullMQ's scripts need every key of the queue in one slot; use "{${env.QUEUE_PREFIX}}" (a hash tag)`,
      });
    }
    if (env.HTTP_HEADERS_TIMEOUT_MS > env.HTTP_REQUEST_TIMEOUT_MS) {
      context.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: `must not exceed HTTP_REQUEST_TIMEOUT_MS (${env.HTTP_REQUEST_TIMEOUT_MS}): the headers are part of the request` });
    }
    if (env.WORKER_STALL_TIMEOUT_MS !== 0 && env.WORKER_STALL_TIMEOUT_MS < 3 * env.LOCK_DURATION_MS) {
      context.addIssue({ code: 'custom', path: ['WORKER_STALL_TIMEOUT_MS'], message: `must be 0 (off) or at least three LOCK_DURATION_MS (${3 * env.LOCK_DURATION_MS}): a shorter idle spell is not a stall` });
    }
    // A multipart upload stops reading while it waits for room in the upload budget: that silence is ours, not the client's.
    if (env.HTTP_IDLE_TIMEOUT_MS <= env.UPLOAD_BUDGET_WAIT_MS) {
      context.addIssue({ code: 'custom', path: ['HTTP_IDLE_TIMEOUT_MS'], message: `must be longer than UPLOAD_BUDGET_WAIT_MS (${env.UPLOAD_BUDGET_WAIT_MS}), which an upload may wait in silence` });
    }
  });

export type Env = Omit<z.infer<typeof envSchema>, 'WORKER_HTTP_PORT'> & { WORKER_HTTP_PORT: number };

/** Parses the environment or throws one error listing every bad variable. */
export function parseEnv(source: NodeJS.ProcessEnv): Env {
  // An empty variable means "not set": `FOO= npm start` should fall back to the default.
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, value]) => value !== undefined && value !== ''));
  const result = envSchema.safeParse(cleaned);
  // Which way to reach Redis is read from what was set, not from the defaults filled in.
  const topology = redisTopologyProblems(cleaned);
  if (result.success && topology.length === 0) return { ...result.data, WORKER_HTTP_PORT: result.data.WORKER_HTTP_PORT ?? workerPortBeside(result.data.PORT) };
  const issues: Array<[string, string]> = [...(result.success ? [] : result.error.issues.map((issue): [string, string] => [issue.path.join('.'), issue.message])), ...topology];
  const problems = issues.map(([path, message]) => `  ${path}: ${message}`).join('\n');
  throw new Error(`Invalid configuration:\n${problems}`);
}

/** The default worker port: the one after the API's (0 stays 0: any free port; after 65535, any free port). */
function workerPortBeside(apiPort: number): number {
  return apiPort === 0 || apiPort === 65535 ? 0 : apiPort + 1;
}

/** For entry points: the parsed environment, or the problems reported through `fatal` and exit code 2. */
export function parseEnvOrExit(fatal: (message: string) => void): Env {
  try {
    return parseEnv(process.env);
  } catch (error) {
    fatal((error as Error).message);
    process.exit(2);
  }
}
