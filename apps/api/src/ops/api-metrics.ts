import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { answerWithin } from '@app/redis';
import { InferenceQueue } from '../jobs/inference-queue';

const JOB_STATES = ['wait', 'prioritized', 'active', 'completed', 'failed', 'delayed'] as const;
/**
 * Longest a scrape waits for the queue's counts. Prometheus' default scrape timeout is 10 s; a scrape that
 * waits on a stopped Redis (ioredis queues commands while reconnecting) would lose every other metric with it.
 */
export const QUEUE_COUNTS_TIMEOUT_MS = 1000;

/** The API's Prometheus metrics (prom-client). Default metrics include event-loop lag and its percentiles. */
@Injectable()
export class ApiMetrics {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly endToEnd = new Histogram({
    name: 'inference_end_to_end_seconds',
    help: 'Synchronous classification from request to answer, by model',
    labelNames: ['model'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly coalescedGroupSize = new Histogram({
    name: 'classify_coalesced_group_size',
    help: 'Classify requests sent as one queue job (1: a single classify job), by model; only while CLASSIFY_COALESCE_MAX > 1',
    labelNames: ['model'],
    buckets: [1, 2, 3, 4, 6, 8, 12, 16, 32, 64],
    registers: [this.registry],
  });

  readonly cacheHits = new Counter({ name: 'result_cache_hits_total', help: 'Answers served from stored results', labelNames: ['kind'], registers: [this.registry] });

  readonly abandonedJobs = new Counter({
    name: 'classify_jobs_abandoned_total',
    help: 'Classify jobs whose client hung up before the answer: dropped before a worker took them, or already running',
    labelNames: ['outcome'],
    registers: [this.registry],
  });

  readonly urlRefusals = new Counter({ name: 'url_fetch_refusals_total', help: 'URL-intake refusals by error code', labelNames: ['code'], registers: [this.registry] });

  /** Scrapes whose queue counts could not be read (Redis down or slow): queue_jobs is then left out of that scrape. */
  readonly queueCountErrors: Counter;

  constructor(jobs: InferenceQueue) {
    this.registry.setDefaultLabels({ service: 'api' });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
    // prom-client collects all metrics of a scrape at once: both series below share this scrape's one read. A read
    // Redis has not answered yet is joined by later scrapes rather than repeated, so a frozen Redis (and
    // REDIS_COMMAND_TIMEOUT_MS=0) never piles up one unanswered read per scrape.
    let underway: Promise<Record<string, number>> | undefined;
    let pending: Promise<Record<string, number> | undefined> | undefined;
    const readCounts = () => {
      underway ??= jobs.queue.getJobCounts(...JOB_STATES).finally(() => (underway = undefined));
      return (pending ??= answerWithin(underway, QUEUE_COUNTS_TIMEOUT_MS)
        .catch(() => undefined)
        .finally(() => setImmediate(() => (pending = undefined))));
    };
    new Gauge({
      name: 'queue_jobs',
      help: 'Jobs in the inference queue by state (read from BullMQ at scrape time)',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
      // Redis trouble must not turn the whole scrape into a 500: the process' own metrics matter most then.
      // A failed read drops the series (stale counts would look healthy); the counter below counts it.
      async collect() {
        const counts = await readCounts();
        this.reset();
        if (counts) for (const state of JOB_STATES) this.set({ queue: jobs.queue.name, state }, counts[state] ?? 0);
      },
    });
    this.queueCountErrors = new Counter({
      name: 'queue_jobs_read_errors_total',
      help: 'Scrapes that could not read the queue counts from Redis within 1 s (queue_jobs absent from those scrapes)',
      registers: [this.registry],
      async collect() {
        if (!(await readCounts())) this.inc();
      },
    });
  }
}
