/**
 * npm run load-test -- --url http://127.0.0.1:3000 --image path --concurrency 32 --requests 2000
 *   [--duration 30s] [--rate N] [--path /v1/classify] [--model NAME] [--max-error-rate 0.01] [--allow-remote]
 *
 * Drives POST <url><path> with a raw image body through autocannon. Always bounded: by --requests,
 * or by --duration (default cap 10 minutes). --rate gives an open-model constant arrival rate
 * (requests/s over all connections). Every request is awaited; the summary prints throughput,
 * latency percentiles, counts by status and errors. Exit 1 when the error rate exceeds --max-error-rate.
 * Targets only loopback addresses unless --allow-remote is given.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import autocannon from 'autocannon';
import { isLoopbackHost } from './loopback';
import { MAX_DURATION_SECONDS, parseLoadTestArgs } from './load-test-options';

const CONTENT_TYPES: Record<string, string> = { '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png', '.webp': 'image/webp' };

async function main(): Promise<void> {
  const options = parseLoadTestArgs(process.argv.slice(2));
  const target = new URL(options.path, options.url);
  if (!options.allowRemote && !isLoopbackHost(target.hostname)) {
    throw new Error(`refusing to load-test ${target.hostname}: only loopback targets unless --allow-remote is given (and it is your own host)`);
  }
  if (options.model) target.searchParams.set('model', options.model);
  const body = readFileSync(options.image);
  const contentType = CONTENT_TYPES[extname(options.image).toLowerCase()] ?? 'application/octet-stream';

  const statuses = new Map<number, number>();
  let finished!: (error: Error | null, result: autocannon.Result) => void;
  const done = new Promise<autocannon.Result>((resolve, reject) => (finished = (error, result) => (error ? reject(error) : resolve(result))));
  const instance = autocannon(
    {
      url: target.toString(),
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
      connections: options.concurrency,
      // Only the bound in use: autocannon rejects a `duration: undefined` key (and then never finishes).
      ...(options.requests ? { amount: options.requests } : { duration: options.durationSeconds }),
      ...(options.rate ? { overallRate: options.rate } : {}),
      timeout: 60,
    },
    (error, result) => finished(error, result),
  );
  instance.on('response', (_client: unknown, statusCode: number) => statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1));
  // A hard stop in case the target stops answering: nothing here runs unbounded.
  const cap = setTimeout(() => instance.stop(), ((options.durationSeconds ?? MAX_DURATION_SECONDS) + 60) * 1000);
  autocannon.track(instance, { renderProgressBar: process.stderr.isTTY, renderResultsTable: false, renderLatencyTable: false });
  const result = await done.finally(() => clearTimeout(cap));

  const sent = result.requests.total;
  const ok = statuses.get(200) ?? 0;
  const failures = sent - ok + result.errors + result.timeouts;
  const errorRate = sent > 0 ? failures / Math.max(sent, 1) : 1;
  const summary = {
    target: target.toString(),
    image: options.image,
    concurrency: options.concurrency,
    requests: sent,
    durationSeconds: Math.round(result.duration * 100) / 100,
    throughputPerSecond: Math.round((sent / result.duration) * 10) / 10,
    latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max, mean: Math.round(result.latency.average * 10) / 10 },
    statusCounts: Object.fromEntries([...statuses.entries()].sort(([a], [b]) => a - b)),
    errors: result.errors,
    timeouts: result.timeouts,
    errorRate: Math.round(errorRate * 10000) / 10000,
  };
  console.log(
    [
      `target        ${summary.target}`,
      `requests      ${summary.requests} in ${summary.durationSeconds}s at concurrency ${summary.concurrency}`,
      `throughput    ${summary.throughputPerSecond} req/s`,
      `latency (ms)  p50 ${summary.latencyMs.p50}  p90 ${summary.latencyMs.p90}  p99 ${summary.latencyMs.p99}  max ${summary.latencyMs.max}`,
      `status codes  ${JSON.stringify(summary.statusCounts)}`,
      `errors        ${summary.errors} socket errors, ${summary.timeouts} timeouts, error rate ${summary.errorRate}`,
    ].join('\n'),
  );
  console.log(JSON.stringify(summary));
  if (errorRate > options.maxErrorRate) {
    console.error(`error rate ${summary.errorRate} is above --max-error-rate ${options.maxErrorRate}`);
    process.exit(1);
  }
}

main().catch((error) => {
  console.error((error as Error).message);
  process.exit(2);
});
