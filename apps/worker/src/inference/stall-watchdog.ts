import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import type { Queue, Worker } from 'bullmq';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { INFERENCE_QUEUE } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { logQueueErrors } from '@app/redis';
import { WorkerMetrics } from '../ops/worker-metrics';
import { workerId } from '../worker-id';

/** What the worker reports about its own activity. */
export interface WorkerActivity {
  /** Jobs this worker runs now. */
  running(): number;
  /** When this worker last took or finished a job (epoch ms; its start time before the first). */
  lastActivityAt(): number;
}

/** How the watchdog sees the queue now: `stalled` since when (epoch ms), for readiness. */
export interface StallState {
  stalledSince?: number;
  reconnects: number;
}

/**
 * The silent stall BullMQ users report after a failover or a dropped connection (taskforcesh/bullmq#4378, #2964,
 * #648): the worker is connected and `isRunning()`, jobs wait, nothing is processed. Every quarter of
 * WORKER_STALL_TIMEOUT_MS this counts the queue's waiting (wait + prioritized) and active jobs with the queue's own
 * connection (a paused queue is no stall: its jobs wait on purpose). When jobs have waited, none has been active on any worker, and this worker has taken none, for the
 * whole WORKER_STALL_TIMEOUT_MS, it is stalled: one `worker.stalled` error line, `worker_stalls_total` + 1,
 * readiness down, then WORKER_STALL_ACTION: `reconnect` drops and re-opens the worker's blocking connection (and
 * exits, as `exit` does, if the stall outlasts another timeout), `exit` closes the app (its jobs finish, none is
 * running) with exit code 1 for its supervisor to start a fresh process. A Redis that does not answer is not a
 * stall (the connections are already retrying): the clock restarts.
 */
@Injectable()
export class StallWatchdog implements OnApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private worker?: Worker;
  private activity?: WorkerActivity;
  private suspectSince?: number;
  private checking = false;
  readonly state: StallState = { reconnects: 0 };

  constructor(
    private readonly config: AppConfig,
    @InjectQueue(INFERENCE_QUEUE) private readonly queue: Queue,
    private readonly metrics: WorkerMetrics,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {
    // The worker's only Queue handle is this one: its connection errors go to the JSON log, throttled.
    logQueueErrors(queue, logger, { action: 'queue.error', what: 'the inference queue' });
  }

  /** Starts watching `worker` (once it runs). No-op with WORKER_STALL_TIMEOUT_MS=0. */
  watch(worker: Worker, activity: WorkerActivity): void {
    const timeoutMs = this.config.values.WORKER_STALL_TIMEOUT_MS;
    if (timeoutMs === 0) return;
    this.worker = worker;
    this.activity = activity;
    this.timer = setInterval(() => void this.check(), Math.max(250, Math.floor(timeoutMs / 4)));
    this.timer.unref();
  }

  /** One look at the queue; acts when the stall has lasted WORKER_STALL_TIMEOUT_MS. Never throws. */
  async check(now = Date.now()): Promise<void> {
    if (this.checking || !this.worker || !this.activity || this.worker.closing) return;
    this.checking = true;
    try {
      const timeoutMs = this.config.values.WORKER_STALL_TIMEOUT_MS;
      if (this.activity.running() > 0) return this.clear(now);
      const counts = await this.countJobs();
      // Redis does not answer: an outage, which the connections are already retrying. The clock starts again.
      if (!counts) return void (this.suspectSince = undefined);
      const waiting = (counts.wait ?? 0) + (counts.prioritized ?? 0);
      // A paused queue (Queue.pause(), bull-board's Pause) keeps its jobs waiting on purpose: not a stall.
      if (waiting === 0 || (counts.active ?? 0) > 0 || counts.paused) return this.clear(now);
      this.suspectSince ??= now;
      if (now - this.suspectSince < timeoutMs || now - this.activity.lastActivityAt() < timeoutMs) return;
      if (this.state.stalledSince === undefined) return await this.stalled(now, waiting);
      // Still stalled one more timeout after the reconnect: a fresh process is the remaining remedy.
      if (now - this.state.stalledSince >= 2 * timeoutMs) this.exit(now, waiting);
    } catch (error) {
      this.logger.warn({ action: 'worker.stall_check_failed', err: error }, 'stall check failed');
    } finally {
      this.checking = false;
    }
  }

  /** Job counts and `paused` (1 when the queue is paused), or undefined when Redis does not answer within 1 s (not a stall: a Redis outage). */
  private async countJobs(): Promise<Record<string, number> | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 1000)));
    try {
      const counts = Promise.all([this.queue.getJobCounts('wait', 'prioritized', 'active'), this.queue.isPaused()]).then(([jobs, paused]) => ({ ...jobs, paused: paused ? 1 : 0 }));
      return await Promise.race([counts, timeout]);
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  private clear(now: number): void {
    if (this.state.stalledSince !== undefined) {
      this.logger.info({ action: 'worker.stall_recovered', workerId, stalledMs: now - this.state.stalledSince }, 'the worker takes jobs again');
      this.metrics.stalled.set(0);
    }
    this.suspectSince = undefined;
    this.state.stalledSince = undefined;
  }

  private async stalled(now: number, waiting: number): Promise<void> {
    const action = this.config.values.WORKER_STALL_ACTION;
    this.state.stalledSince = now;
    this.metrics.stalled.set(1);
    this.metrics.stalls.inc({ action });
    this.logger.error(
      { action: 'worker.stalled', workerId, waiting, idleMs: now - this.activity!.lastActivityAt(), remedy: action },
      `jobs are waiting, none is active on any worker, and this worker took none for ${this.config.values.WORKER_STALL_TIMEOUT_MS} ms: ${action === 'exit' ? 'exiting for the supervisor to restart it' : 'reconnecting'}`,
    );
    if (action === 'exit') return this.exit(now, waiting);
    this.state.reconnects++;
    // The blocking connection (BZPOPMIN on the queue's marker) is the one a stall leaves waiting on nothing;
    // dropping it also frees a fetch loop parked on its reconnection. Not awaited: a reconnection that hangs
    // must not stop the checks (the next timeout then exits).
    const worker = this.worker!;
    void worker.backend
      .disconnectBlocking(true)
      .then(() => worker.backend.reconnectBlocking())
      .catch((error) => this.logger.warn({ action: 'worker.stall_reconnect_failed', err: error }, 'reconnecting the blocking connection failed'));
  }

  private exit(now: number, waiting: number): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.logger.fatal({ action: 'worker.stall_exit', workerId, waiting, stalledMs: now - (this.state.stalledSince ?? now) }, 'the worker is stalled: exiting (code 1) for its supervisor to start a fresh one');
    // The graceful shutdown closes the worker (no job runs) and connections, then exits with this code.
    process.exitCode = 1;
    process.kill(process.pid, 'SIGTERM');
  }

  onApplicationShutdown(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
