import { InferenceBatcher } from './inference-batcher';

/** A runBatch double whose batches resolve when the test says so. */
function controlledRunner() {
  const calls: { inputs: number[]; release: () => void; fail: (error: Error) => void }[] = [];
  const run = (inputs: number[]) =>
    new Promise<number[]>((resolve, reject) => {
      calls.push({ inputs, release: () => resolve(inputs.map((x) => x * 10)), fail: reject });
    });
  return { calls, run };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('InferenceBatcher', () => {
  it('flushes as soon as the batch is full, without waiting for the delay', async () => {
    const { calls, run } = controlledRunner();
    const batcher = new InferenceBatcher({ maxBatchSize: 3, maxBatchDelayMs: 60_000, maxInFlight: 1 }, run);
    const results = [1, 2, 3].map((x) => batcher.submit(x));
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1, 2, 3]]);
    calls[0].release();
    const outputs = await Promise.all(results);
    expect(outputs.map((r) => r.output)).toEqual([10, 20, 30]);
    expect(outputs.every((r) => r.batchSize === 3)).toBe(true);
  });

  it('waits up to maxBatchDelayMs for an announced item, then runs the partial batch', async () => {
    jest.useFakeTimers();
    try {
      const { calls, run } = controlledRunner();
      const batcher = new InferenceBatcher({ maxBatchSize: 8, maxBatchDelayMs: 5, maxInFlight: 1 }, run);
      const late = batcher.expect(); // still decoding, and will not make it in time
      void batcher.submit(1);
      void batcher.submit(2);
      jest.advanceTimersByTime(4);
      expect(calls).toHaveLength(0);
      jest.advanceTimersByTime(1);
      expect(calls.map((call) => call.inputs)).toEqual([[1, 2]]);
      late.cancel();
    } finally {
      jest.useRealTimers();
    }
  });

  it('runs as soon as every announced item has arrived, without waiting out the delay', async () => {
    const { calls, run } = controlledRunner();
    const batcher = new InferenceBatcher({ maxBatchSize: 8, maxBatchDelayMs: 60_000, maxInFlight: 1 }, run);
    const [a, b] = [batcher.expect(), batcher.expect()];
    const first = a.submit(1);
    await tick();
    expect(calls).toHaveLength(0); // b is on its way
    const second = b.submit(2);
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1, 2]]);
    calls[0].release();
    expect((await Promise.all([first, second])).map((r) => r.output)).toEqual([10, 20]);
  });

  it('an announced item that never comes (cancelled) releases the batch at once', async () => {
    const { calls, run } = controlledRunner();
    const batcher = new InferenceBatcher({ maxBatchSize: 8, maxBatchDelayMs: 60_000, maxInFlight: 1 }, run);
    const [a, b] = [batcher.expect(), batcher.expect()];
    void a.submit(1);
    a.cancel(); // after submit: no effect
    await tick();
    expect(calls).toHaveLength(0);
    b.cancel();
    b.cancel(); // twice: counted once
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1]]);
    // nothing is announced any more, so the next item runs without waiting
    calls[0].release();
    void batcher.submit(2);
    await tick();
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1], [2]]);
  });

  it('a lone item with nothing announced does not wait for company; items submitted in the same tick share a batch', async () => {
    const { calls, run } = controlledRunner();
    const batcher = new InferenceBatcher({ maxBatchSize: 8, maxBatchDelayMs: 60_000, maxInFlight: 1 }, run);
    const faces = [1, 2, 3].map((x) => batcher.submit(x)); // e.g. every face of one photo, submitted together
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1, 2, 3]]);
    calls[0].release();
    await Promise.all(faces);
    const lone = batcher.submit(4);
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1, 2, 3], [4]]);
    calls[1].release();
    expect((await lone).batchSize).toBe(1);
  });

  it('collects items that arrive while a batch runs into the next batch, up to maxBatchSize', async () => {
    const { calls, run } = controlledRunner();
    const batcher = new InferenceBatcher({ maxBatchSize: 2, maxBatchDelayMs: 0, maxInFlight: 1 }, run);
    const first = batcher.submit(1);
    const rest = [2, 3, 4].map((x) => batcher.submit(x));
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1]]);
    calls[0].release();
    await first;
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1], [2, 3]]);
    calls[1].release();
    await tick();
    await tick();
    expect(calls.map((call) => call.inputs)).toEqual([[1], [2, 3], [4]]);
    calls[2].release();
    expect((await Promise.all(rest)).map((r) => r.output)).toEqual([20, 30, 40]);
  });

  it('returns each result to the caller that submitted it', async () => {
    const batcher = new InferenceBatcher<number, string>({ maxBatchSize: 4, maxBatchDelayMs: 1, maxInFlight: 2 }, async (inputs) =>
      inputs.map((x) => `result-${x}`),
    );
    const inputs = Array.from({ length: 25 }, (_, i) => i);
    const results = await Promise.all(inputs.map((x) => batcher.submit(x)));
    expect(results.map((r) => r.output)).toEqual(inputs.map((x) => `result-${x}`));
    expect(Math.max(...results.map((r) => r.batchSize))).toBe(4);
  });

  it('a failing input fails only its own caller', async () => {
    const runs: number[][] = [];
    const batcher = new InferenceBatcher<number, number>({ maxBatchSize: 4, maxBatchDelayMs: 1, maxInFlight: 1 }, async (inputs) => {
      runs.push(inputs);
      if (inputs.includes(13)) throw new Error('corrupt input 13');
      return inputs.map((x) => x + 1);
    });
    const settled = await Promise.allSettled([1, 13, 3, 4].map((x) => batcher.submit(x)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason.message).toBe('corrupt input 13');
    expect((settled[0] as PromiseFulfilledResult<{ output: number }>).value.output).toBe(2);
    expect(runs[0]).toEqual([1, 13, 3, 4]);
  });

  it('never runs more batches at once than maxInFlight', async () => {
    let running = 0;
    let peak = 0;
    const batcher = new InferenceBatcher<number, number>({ maxBatchSize: 2, maxBatchDelayMs: 0, maxInFlight: 2 }, async (inputs) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      return inputs;
    });
    await Promise.all(Array.from({ length: 20 }, (_, i) => batcher.submit(i)));
    expect(peak).toBe(2);
  });
});
