import { basename } from 'node:path';
import pino, { Logger } from 'pino';

export type ServiceName = 'api' | 'worker' | 'bench' | 'launcher';

/**
 * The product's log format: one JSON line per action with `service`, `script` (entry file), ISO `time`,
 * `action` (e.g. job.enqueued) and the request/job id, so one request can be followed from API to worker.
 */
export function createLogger(service: ServiceName, level = process.env.LOG_LEVEL || 'info'): Logger {
  const script = process.argv[1] ? basename(process.argv[1]) : 'unknown';
  return pino({
    level,
    base: { service, script, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
