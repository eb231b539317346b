export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** Runs `task` `total` times with at most `concurrency` at once; returns each call's latency (ms) and the wall time. */
export async function runConcurrently(total: number, concurrency: number, task: (i: number) => Promise<unknown>): Promise<{ latencies: number[]; wallMs: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const i = next++;
        const t0 = performance.now();
        await task(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { latencies, wallMs: performance.now() - started };
}

export interface SteadyWindow {
  /** Completions per second inside the window. */
  throughput: number;
  /** Requests that completed inside the window. */
  completed: number;
  /** Latency (ms) of each request that completed inside the window. */
  latencies: number[];
}

/**
 * Closed-loop load measured at steady state: `concurrency` loops call `task` back to back; after `warmMs` the window
 * opens (`hooks.open`), after `windowMs` more it closes (`hooks.close`), and only completions inside it count;
 * requests still in flight then are awaited, not counted. A fixed count of requests instead ends with a drain, the
 * last of them running with fewer than `concurrency` in flight, which charges each side about one latency of idle
 * cores: with 200 requests at 32 clients (BENCH_QUICK), a run of about a second, that was a tenth of the service's
 * time (p50 160 ms) and less of the in-process reference's (p50 ~110 ms). CPU per request is CPU between the hooks
 * divided by `completed`. Used alike for the reference and the service.
 */
export async function steadyLoad(
  concurrency: number,
  task: (i: number) => Promise<unknown>,
  timing: { warmMs: number; windowMs: number },
  hooks: { open?: () => unknown; close?: () => unknown } = {},
): Promise<SteadyWindow> {
  const latencies: number[] = [];
  let next = 0;
  let phase: 'warm' | 'window' | 'over' = 'warm';
  const hookResults: unknown[] = [];
  const windowOpen = setTimeout(() => {
    phase = 'window';
    hookResults.push(hooks.open?.());
  }, timing.warmMs);
  const windowClose = setTimeout(() => {
    phase = 'over';
    hookResults.push(hooks.close?.());
  }, timing.warmMs + timing.windowMs);
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (phase !== 'over') {
          const i = next++;
          const t0 = performance.now();
          await task(i);
          if (phase === 'window') latencies.push(performance.now() - t0);
        }
      }),
    );
  } finally {
    clearTimeout(windowOpen);
    clearTimeout(windowClose);
  }
  await Promise.all(hookResults);
  return { throughput: (latencies.length / timing.windowMs) * 1000, completed: latencies.length, latencies };
}
