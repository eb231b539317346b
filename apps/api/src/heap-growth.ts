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
 */
export function applyHeapGrowingPercent(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
