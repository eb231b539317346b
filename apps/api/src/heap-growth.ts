import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what the last full GC left, in percent (V8's
 * `--heap-growing-percent`; API_HEAP_GROWING_PERCENT, 0 = V8's own factor). Set from code because Node refuses V8
 * GC flags in NODE_OPTIONS; V8 reads it at every full GC, so setting it at start-up applies to the whole run.
 *
 * Why: every request's objects live across its wait (hundreds of ms under load), so with 2 MB semi-spaces they are
 * promoted to the old generation and die there, ~35 kB a request. V8's own factor let that garbage reach ~100 MB
 * before a full GC (heap used 55 → 170 MB over 3,000 requests at 32 clients, RSS 266 MB; measured with `/metrics`).
 * At 50 % the heap cycles 50 → ~75 MB and RSS stays at 170 MB; 1,000 requests in flight peaked at 249–261 MB against
 * 260–298, and 3 s after that burst 178–220 against 218–258 (interleaved runs, fresh API each). CPU: an interleaved
 * A/B (`dist/bench/api-ab.js`, 6 rounds of 500 requests at 32 clients) measured 2.46 against 2.48 ms of API CPU
 * per request (medians): the extra full GCs of a ~60 MB heap cost nothing measurable. (10 % cost +38 % API CPU.)
 *
 * Default 100 since 2026-12-01: on a faster machine (the API at ~1 ms of CPU per request) 50 often fell into a full
 * GC every 0.4 s that freed 4–5 MB of a ~48 MB heap (`--trace-gc`: 16–17 mark-compacts per 1,500 requests at 32
 * clients), the image bytes each request allocates (socket chunks, the body, the SET) counting against the same
 * growth; the API then spent 1.39–1.41 ms of CPU a request against 0.85–1.10 at 100 (three runs each), with RSS after
 * the load 174–185 against 182–192 MB and the 1,000-in-flight peak 283 / 324 against 267 / 267 MB. `api-pair`:
 * B ÷ A 0.93 (4 rounds, 0.92–0.94).
 */
export function applyHeapGrowingPercent(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
