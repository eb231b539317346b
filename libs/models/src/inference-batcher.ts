export interface BatcherOptions {
  maxBatchSize: number;
  /** How long the first item of a batch may wait for company. */
  maxBatchDelayMs: number;
  /** Batches that may run at once (one per inference thread); further items wait and join the next batch. */
  maxInFlight: number;
}

export interface BatchedResult<TOutput> {
  output: TOutput;
  batchSize: number;
  /** Wall time of the batch run this item was part of. */
  batchMs: number;
}

/** An item announced before it exists (its image is still being read and decoded). */
export interface Arrival<TInput, TOutput> {
  /** Submits the announced item. */
  submit(input: TInput): Promise<BatchedResult<TOutput>>;
  /** The item will not come (its job failed first). Safe to call more than once, and after submit. */
  cancel(): void;
}

interface Pending<TInput, TOutput> {
  input: TInput;
  resolve: (result: BatchedResult<TOutput>) => void;
  reject: (error: unknown) => void;
}

/**
 * Collects single items that arrive together into batches for one model (dynamic batching).
 * A batch is flushed when it is full, or at once when a running batch finishes and items are waiting (they
 * already waited for the model). Otherwise a batch waits for company only while company is on its way:
 * items announced with expect() (images still being decoded) are waited for, up to maxBatchDelayMs; with
 * none announced, the batch runs as soon as the current tick ends, so items submitted together (the faces
 * of one photo) still share it and a lone request never pays the delay.
 * If a batch fails, its items are retried one by one so a bad input fails only its own caller.
 */
export class InferenceBatcher<TInput, TOutput> {
  private queue: Pending<TInput, TOutput>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private inFlight = 0;
  /** Announced items not yet submitted or cancelled. */
  private upcoming = 0;

  constructor(
    private readonly options: BatcherOptions,
    /** Runs a batch; must return one output per input, in order. */
    private readonly runBatch: (inputs: TInput[]) => Promise<TOutput[]>,
  ) {
    if (options.maxBatchSize < 1 || options.maxInFlight < 1) throw new Error('maxBatchSize and maxInFlight must be at least 1');
  }

  /** Announces an item that is on its way, so a batch waits for it (up to maxBatchDelayMs). */
  expect(): Arrival<TInput, TOutput> {
    this.upcoming++;
    let open = true;
    const close = () => {
      if (!open) return false;
      open = false;
      this.upcoming--;
      return true;
    };
    return {
      submit: (input) => {
        close();
        return this.submit(input);
      },
      cancel: () => {
        if (close()) this.schedule();
      },
    };
  }

  submit(input: TInput): Promise<BatchedResult<TOutput>> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.schedule();
    });
  }

  /** Items waiting for a batch. */
  get waiting(): number {
    return this.queue.length;
  }

  get running(): number {
    return this.inFlight;
  }

  private schedule(): void {
    if (this.inFlight >= this.options.maxInFlight || this.queue.length === 0) return;
    if (this.queue.length >= this.options.maxBatchSize || this.options.maxBatchDelayMs <= 0) {
      this.flush();
    } else if (this.upcoming === 0) {
      // Nobody else is on the way: run once the items submitted in this same tick have joined.
      this.immediate ??= setImmediate(() => {
        this.immediate = undefined;
        this.flush();
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.options.maxBatchDelayMs);
    }
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.immediate) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
    if (this.inFlight >= this.options.maxInFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatchSize);
    this.inFlight++;
    void this.execute(batch).finally(() => {
      this.inFlight--;
      // Whatever arrived meanwhile has already waited at least one batch: run it now.
      if (this.queue.length > 0) this.flush();
    });
    // With spare in-flight capacity and a full batch waiting, start it too.
    if (this.queue.length > 0) this.schedule();
  }

  private async execute(batch: Pending<TInput, TOutput>[]): Promise<void> {
    const started = performance.now();
    try {
      const outputs = await this.runBatch(batch.map((item) => item.input));
      if (outputs.length !== batch.length) throw new Error(`batch of ${batch.length} returned ${outputs.length} outputs`);
      const batchMs = performance.now() - started;
      batch.forEach((item, i) => item.resolve({ output: outputs[i], batchSize: batch.length, batchMs }));
    } catch (error) {
      if (batch.length === 1) {
        batch[0].reject(error);
        return;
      }
      // Isolate the culprit: run each item alone so only the bad one fails.
      for (const item of batch) await this.execute([item]);
    }
  }
}
