import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { multipart, request } from './http';
import { classifySamples, until } from './load';

/** One request of a failover load and how it ended. */
export interface FailoverOutcome {
  kind: 'classify' | 'analysis';
  /** When it was sent (epoch ms). */
  sentAt: number;
  /** From sending to its answer's body read, or to its failure (ms). */
  ms: number;
  /** 0 when the request failed without an answer (refused connection, or no answer within its timeout). */
  status: number;
  /** The answer's `error.code`, when it has one. */
  code?: string;
  /** The Retry-After header as sent (seconds). */
  retryAfter?: string;
  /** classify: the label expected and the one answered. */
  expected?: string;
  label?: string;
  /** analysis: the image's hash. */
  hash?: string;
  /** Why it failed without an answer. */
  error?: string;
}

export interface FailoverLoadOptions {
  /** Base URLs of the APIs; requests of each kind go to them in turn. */
  apis: string[];
  /** The model classified and analysed, e.g. `mobilenet_v2`. */
  model: string;
  /** The apps' REQUEST_WAIT_MS (ms): each request is abandoned 10 s past it; an answer may take 3 s past it. */
  requestWaitMs: number;
  /** A classification is sent every this many ms. */
  classifyEveryMs: number;
  /** An analysis is sent every this many ms, until `analyses` have been sent. */
  analysisEveryMs: number;
  /** How many analyses at most, each of a distinct 48×48 noise PNG. */
  analyses: number;
}

/**
 * An open-loop, bounded load of classifications (the labelled samples in turn, so each answer's label can be
 * checked) and analyses (distinct images, so every one is a job of its own: the same image would be answered
 * from its stored result) on one or more APIs, sent on timers whatever the answers, while a test breaks Redis;
 * then the checks every failover test makes on how those requests ended.
 */
export class FailoverLoad {
  /** Every request sent, in sending order; filled by `runDuring`. */
  outcomes: FailoverOutcome[] = [];

  constructor(private readonly options: FailoverLoadOptions) {}

  /**
   * Sends the load while `faults` runs (the topology steps: kills, restarts, sleeps), stops sending when it ends
   * (or throws), then waits for every request to end. Resolves with every outcome.
   */
  async runDuring(faults: () => Promise<void>): Promise<FailoverOutcome[]> {
    const { apis, model, requestWaitMs } = this.options;
    const samples = classifySamples(model);
    const images = await Promise.all(Array.from({ length: this.options.analyses }, () => sharp(randomBytes(48 * 48 * 3), { raw: { width: 48, height: 48, channels: 3 } }).png().toBuffer()));
    const pending: Promise<FailoverOutcome>[] = [];
    const timeout = () => AbortSignal.timeout(requestWaitMs + 10_000);
    let classified = 0;
    let analysed = 0;
    const classifyTimer = setInterval(() => {
      const sample = samples[classified % samples.length];
      const api = apis[classified++ % apis.length];
      const outcome: FailoverOutcome = { kind: 'classify', sentAt: Date.now(), ms: 0, status: 0, expected: sample.label };
      const type = sample.name.endsWith('.png') ? 'image/png' : 'image/jpeg';
      pending.push(send(outcome, () => fetch(`${api}/v1/classify?topk=${sample.topk}`, { method: 'POST', headers: { 'content-type': type }, body: sample.bytes, signal: timeout() }), (body) => (outcome.label = body?.predictions?.[0]?.label)));
    }, this.options.classifyEveryMs);
    const analysisTimer = setInterval(() => {
      if (analysed >= images.length) return;
      const api = apis[analysed % apis.length];
      const bytes = images[analysed++];
      const outcome: FailoverOutcome = { kind: 'analysis', sentAt: Date.now(), ms: 0, status: 0 };
      const body = multipart({ images: { bytes, filename: 'noise.png', type: 'image/png' }, models: model });
      pending.push(send(outcome, () => fetch(`${api}/v1/analyses`, { method: 'POST', body, signal: timeout() }), (answer) => (outcome.hash = answer?.images?.[0]?.hash)));
    }, this.options.analysisEveryMs);
    try {
      await faults();
    } finally {
      clearInterval(classifyTimer);
      clearInterval(analysisTimer);
    }
    this.outcomes = await Promise.all(pending);
    return this.outcomes;
  }

  /**
   * Every request answered (none failed or timed out), each with 200, 202 or 503 (never a 500), every 503 with a
   * Retry-After of at least 1 s, none later than the wait limit plus 3 s of its own work, and every classification
   * answered 200 named its sample's label.
   */
  expectEveryRequestAnsweredInTime(): void {
    const all = this.outcomes;
    expect(all.filter((o) => o.status === 0)).toEqual([]);
    expect(all.filter((o) => ![200, 202, 503].includes(o.status))).toEqual([]);
    expect(all.filter((o) => o.status === 503 && !(Number(o.retryAfter) >= 1))).toEqual([]);
    expect(all.filter((o) => o.ms > this.options.requestWaitMs + 3000)).toEqual([]);
    expect(all.filter((o) => o.kind === 'classify' && o.status === 200 && o.label !== o.expected)).toEqual([]);
  }

  /**
   * Time to resume (ms): from `at` (epoch ms, e.g. a kill) to the earliest answer of a classification sent at or
   * after `at` that was answered 200; Infinity when none was.
   */
  resumedAfterMs(at: number): number {
    const served = this.outcomes.filter((o) => o.kind === 'classify' && o.status === 200 && o.sentAt >= at).sort((a, b) => a.sentAt + a.ms - (b.sentAt + b.ms))[0];
    return served ? served.sentAt + served.ms - at : Infinity;
  }

  /**
   * Every analysis accepted (202) reaches `completed`: its result is asked for on `apiUrl` every 500 ms (a job the
   * failover lost is queued again when its result is asked for) until all have completed or `timeoutMs` (ms) has
   * passed; then the ones that did not complete are expected to be none, each named with its last state.
   */
  async expectAcceptedAnalysesCompleted(apiUrl: string, timeoutMs = 90_000): Promise<void> {
    const accepted = this.outcomes.filter((o) => o.kind === 'analysis' && o.status === 202);
    const states = new Map<string, string>();
    await until(
      async () => {
        for (const o of accepted) {
          if (states.get(o.hash!) === 'completed') continue;
          const answer = await request(`${apiUrl}/v1/images/${o.hash}/results/${this.options.model}`);
          states.set(o.hash!, answer.status === 200 ? answer.body.state : `${answer.status} ${answer.body?.state ?? answer.body?.error?.code}`);
        }
        return accepted.every((o) => states.get(o.hash!) === 'completed');
      },
      timeoutMs,
      'every accepted analysis to complete',
      500,
    ).catch(() => undefined);
    expect(accepted.filter((o) => states.get(o.hash!) !== 'completed').map((o) => `${o.hash}: ${states.get(o.hash!)}`)).toEqual([]);
  }

  /** How many requests of `kind` were answered with `status`. */
  count(kind: FailoverOutcome['kind'], status: number): number {
    return this.outcomes.filter((o) => o.kind === kind && o.status === status).length;
  }

  /** For the log: the requests sent in the `resumedMs` (ms) after `at` (epoch ms), by how they ended. */
  describeWindow(at: number, resumedMs: number): string {
    const window = this.outcomes.filter((o) => o.sentAt >= at && o.sentAt < at + resumedMs);
    const answered = (status: number) => window.filter((o) => o.status === status).length;
    return `${window.length} requests sent before that: ${answered(503)} × 503, ${answered(200)} × 200, ${answered(202)} × 202, ${answered(0)} unanswered`;
  }

  /** For the log: every request by kind and status, and the first few that ended otherwise than 200/202/503. */
  describeTotals(): string {
    const other = this.outcomes.filter((o) => ![200, 202, 503].includes(o.status)).map((o) => `${o.kind} ${o.status} ${o.error ?? ''}`);
    return (
      `${this.outcomes.length} requests; classify ${this.count('classify', 200)} × 200, ${this.count('classify', 202)} × 202, ${this.count('classify', 503)} × 503; ` +
      `analyses ${this.count('analysis', 202)} accepted, ${this.count('analysis', 503)} × 503; other statuses: ${JSON.stringify(other.slice(0, 5))}`
    );
  }
}

/** Sends one request; never throws: a failure without an answer is recorded as status 0 with its error. */
async function send(outcome: FailoverOutcome, call: () => Promise<Response>, read: (body: any) => void): Promise<FailoverOutcome> {
  try {
    const response = await call();
    outcome.status = response.status;
    outcome.retryAfter = response.headers.get('retry-after') ?? undefined;
    const body: any = await response.json().catch(() => undefined);
    outcome.code = body?.error?.code;
    read(body);
  } catch (error) {
    outcome.error = (error as Error).message;
  }
  outcome.ms = Date.now() - outcome.sentAt;
  return outcome;
}
