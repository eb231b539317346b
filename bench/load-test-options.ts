import { CliFlags } from './cli-flags';

/** What `npm run load-test` was asked to do, after defaults and bounds. */
export interface LoadTestOptions {
  url: string;
  image: string;
  path: string;
  model?: string;
  /** Open connections; never more than `requests` (autocannon refuses that). */
  concurrency: number;
  requests?: number;
  durationSeconds?: number;
  /** Requests per second over all connections (open model). */
  rate?: number;
  maxErrorRate: number;
  allowRemote: boolean;
}

export const MAX_DURATION_SECONDS = 600;
const FLAGS = ['url', 'image', 'path', 'model', 'concurrency', 'requests', 'duration', 'rate', 'max-error-rate', 'allow-remote'];

/**
 * Parses the load test's flags. Throws on an unknown flag (listing the valid ones), on a bad number or
 * duration, and on a duration over MAX_DURATION_SECONDS. Without --requests or --duration: 2000 requests.
 */
export function parseLoadTestArgs(argv: string[]): LoadTestOptions {
  const args = new CliFlags(argv, FLAGS);
  const duration = args.get('duration');
  const durationSeconds = duration ? parseDuration(duration) : undefined;
  const requests = args.positive('requests') ?? (durationSeconds ? undefined : 2000);
  const concurrency = args.positive('concurrency', 32);
  return {
    url: args.get('url') ?? 'http://127.0.0.1:3000',
    image: args.get('image') ?? 'test/fixtures/castle_image.jpg',
    path: args.get('path') ?? '/v1/classify',
    model: args.get('model'),
    concurrency: requests ? Math.min(concurrency, requests) : concurrency,
    requests,
    durationSeconds,
    rate: args.positive('rate'),
    maxErrorRate: Number(args.get('max-error-rate') ?? 0.01),
    allowRemote: args.get('allow-remote') === 'true',
  };
}

function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!match) throw new Error(`--duration must look like 30s, 2m or 500ms, got ${text}`);
  const value = Number(match[1]);
  const seconds = match[2] === 'm' ? value * 60 : match[2] === 'ms' ? value / 1000 : value;
  if (seconds > MAX_DURATION_SECONDS) throw new Error(`--duration is capped at ${MAX_DURATION_SECONDS}s`);
  return seconds;
}
