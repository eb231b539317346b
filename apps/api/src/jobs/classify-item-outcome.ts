import { ClassifyBatchJobResult, decodeJobError, ErrorCode } from '@app/contracts';
import type { JobOutcome } from './job-waiter';

/** One item's outcome from a completed classify-batch job's result. */
export function itemOutcome(result: unknown, index: number): JobOutcome {
  const item = (result as ClassifyBatchJobResult | undefined)?.items?.[index];
  if (item && 'result' in item) return { state: 'completed', result: item.result };
  if (item && 'error' in item) return { state: 'failed', error: decodeJobError(item.error) };
  return { state: 'failed', error: { code: ErrorCode.InferenceFailed, message: 'the coalesced job completed without this request\'s item' } };
}
