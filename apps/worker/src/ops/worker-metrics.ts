import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The worker's Prometheus metrics, served on WORKER_HTTP_PORT. Default metrics include event-loop lag. */
@Injectable()
export class WorkerMetrics {
  readonly registry = new Registry();

  readonly batchSize = new Histogram({
    name: 'inference_batch_size',
    help: 'Images per model run',
    labelNames: ['model'],
    buckets: [1, 2, 4, 8, 16, 32],
    registers: [this.registry],
  });

  readonly inferenceSeconds = new Histogram({
    name: 'inference_batch_duration_seconds',
    help: 'ONNX Runtime run time of one batch, by model',
    labelNames: ['model'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly jobs = new Counter({ name: 'worker_jobs_total', help: 'Jobs finished by this worker', labelNames: ['name', 'outcome'], registers: [this.registry] });

  /** StallWatchdog: stalls seen (by the remedy applied), and 1 while this worker is stalled. */
  readonly stalls = new Counter({ name: 'worker_stalls_total', help: 'Times jobs waited with none active and this worker idle for WORKER_STALL_TIMEOUT_MS', labelNames: ['action'], registers: [this.registry] });
  readonly stalled = new Gauge({ name: 'worker_stalled', help: '1 while the stall watchdog sees this worker stalled', registers: [this.registry] });

  constructor() {
    this.registry.setDefaultLabels({ service: 'worker' });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
  }

  observeBatch(model: string, size: number, seconds: number): void {
    this.batchSize.observe({ model }, size);
    this.inferenceSeconds.observe({ model }, seconds);
  }
}
