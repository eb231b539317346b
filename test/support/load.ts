import { readFileSync } from 'node:fs';
import { runConcurrently } from '../../bench/stats';
import { fixture, expectedTop5 } from './fixtures';
import { request } from './http';
import { setTimeout as sleep } from 'node:timers/promises';

/** A photo with the label the model must put first (from the verified expected results). */
export interface LabelledImage {
  name: string;
  bytes: Buffer;
  label: string;
  /**
   * The top-k each sample is asked with: different for each, so a job's own record (its `topk`) says which
   * photo it carried, even when its client never saw the answer.
   */
  topk: number;
}

export function classifySamples(model = 'mobilenet_v2'): LabelledImage[] {
  return ['castle_image.jpg', 'cat_kitten_224.png', 'dog_beagle_jemma.png'].map((name, i) => ({ name, bytes: fixture(name), label: expectedTop5(model, name)[0].label, topk: i + 1 }));
}

export interface ClassifyOutcome {
  index: number;
  sample: string;
  expected: string;
  sentAt: number;
  ms: number;
  status: number; // 0 when the connection failed
  code?: string;
  label?: string;
  jobId?: string;
  error?: string;
}

/** One classify request that never throws: a failed connection is an outcome (status 0) like any other. */
export async function classifyOnce(baseUrl: string, sample: LabelledImage, index: number, timeoutMs: number): Promise<ClassifyOutcome> {
  const sentAt = Date.now();
  const outcome: ClassifyOutcome = { index, sample: sample.name, expected: sample.label, sentAt, ms: 0, status: 0 };
  try {
    const response = await request(`${baseUrl}/v1/classify?topk=${sample.topk}`, {
      method: 'POST',
      headers: { 'content-type': sample.name.endsWith('.png') ? 'image/png' : 'image/jpeg' },
      body: sample.bytes,
      signal: AbortSignal.timeout(timeoutMs),
    });
    outcome.status = response.status;
    outcome.code = response.body?.error?.code;
    outcome.label = response.body?.predictions?.[0]?.label;
    outcome.jobId = response.body?.id;
  } catch (error) {
    outcome.error = (error as Error).message;
  }
  outcome.ms = Date.now() - sentAt;
  return outcome;
}

/** `total` classify requests over the samples in turn, at most `concurrency` in flight; resolves with every outcome. */
export async function classifyLoad(baseUrl: string, options: { total: number; concurrency: number; timeoutMs: number; samples?: LabelledImage[]; onOutcome?: (outcome: ClassifyOutcome) => void }): Promise<ClassifyOutcome[]> {
  const samples = options.samples ?? classifySamples();
  const outcomes: ClassifyOutcome[] = [];
  await runConcurrently(options.total, options.concurrency, async (index) => {
    const outcome = await classifyOnce(baseUrl, samples[index % samples.length], index, options.timeoutMs);
    outcomes.push(outcome);
    options.onOutcome?.(outcome);
  });
  return outcomes.sort((a, b) => a.index - b.index);
}

/** Resident memory of a process in bytes (Linux /proc), or undefined once it has gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /VmRSS:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples the RSS of some processes every `everyMs` until stop() is called; keeps the peak of each. */
export function sampleRss(pids: Record<string, number>, everyMs = 200): { peaks: Record<string, number>; stop: () => Record<string, number> } {
  const peaks: Record<string, number> = Object.fromEntries(Object.keys(pids).map((name) => [name, 0]));
  const take = () => {
    for (const [name, pid] of Object.entries(pids)) peaks[name] = Math.max(peaks[name], rssBytes(pid) ?? 0);
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    peaks,
    stop: () => {
      clearInterval(timer);
      take();
      return peaks;
    },
  };
}

export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
