import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { InferenceQueue } from '../jobs/inference-queue';

const JOB_STATES = ['wait', 'prioritized', 'active', 'completed', 'failed', 'delayed'] as const;

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

  readonly cacheHits = new Counter({ name: 'result_cache_hits_total', help: 'Answers served from stored results', labelNames: ['kind'], registers: [this.registry] });

  readonly abandonedJobs = new Counter({
    name: 'classify_jobs_abandoned_total',
    help: 'Classify jobs whose client hung up before the answer: dropped before a worker took them, or already running',
    labelNames: ['outcome'],
    registers: [this.registry],
  });

  readonly urlRefusals = new Counter({ name: 'url_fetch_refusals_total', help: 'URL-intake refusals by error code', labelNames: ['code'], registers: [this.registry] });

  constructor(jobs: InferenceQueue) {
    this.registry.setDefaultLabels({ service: 'api' });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
    new Gauge({
      name: 'queue_jobs',
      help: 'Jobs in the inference queue by state (read from BullMQ at scrape time)',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
      async collect() {
        const counts = await jobs.queue.getJobCounts(...JOB_STATES);
        for (const state of JOB_STATES) this.set({ queue: jobs.queue.name, state }, counts[state] ?? 0);
      },
    });
  }
}
