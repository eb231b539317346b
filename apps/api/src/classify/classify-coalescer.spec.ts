import { ClassifyCoalescer } from './classify-coalescer';
import { parseClassifyId, classifyItemId } from '@app/contracts';

/** A fake queue: records each group sent; sends resolve at once unless told to fail. */
function harness(options: { max: number; inFlightLimit: number; delayMs: number }, fail?: Error) {
  const sent: { model: string; jobId: string; items: string[] }[] = [];
  const sizes: number[] = [];
  const coalescer = new ClassifyCoalescer<string>(
    async (model, jobId, items) => {
      sent.push({ model, jobId, items: [...items] });
      if (fail) throw fail;
    },
    options,
    (_model, size) => sizes.push(size),
  );
  return { coalescer, sent, sizes };
}

describe('ClassifyCoalescer', () => {
  afterEach(() => jest.useRealTimers());

  it('sends a request at once, alone, while fewer than the limit are in flight', async () => {
    const { coalescer, sent } = harness({ max: 8, inFlightLimit: 2, delayMs: 50 });
    const a = coalescer.join('m', 'a');
    const b = coalescer.join('m', 'b');
    expect(sent.map((group) => group.items)).toEqual([['a'], ['b']]);
    expect(a.jobId).not.toBe(b.jobId);
    await expect(a.sent).resolves.toBe(1);
    expect(a.index).toBe(0);
    expect(coalescer.inFlightOf('m')).toBe(2);
  });

  it('groups requests that arrive while the limit is in flight; the group goes when an earlier job is answered', async () => {
    const { coalescer, sent, sizes } = harness({ max: 8, inFlightLimit: 1, delayMs: 10_000 });
    const first = coalescer.join('m', 'a');
    const b = coalescer.join('m', 'b');
    const c = coalescer.join('m', 'c');
    expect(sent).toHaveLength(1);
    expect(b.jobId).toBe(c.jobId);
    expect([b.index, c.index]).toEqual([0, 1]);
    first.release();
    expect(sent.map((group) => group.items)).toEqual([['a'], ['b', 'c']]);
    expect(sent[1].jobId).toBe(b.jobId);
    await expect(c.sent).resolves.toBe(2);
    expect(sizes).toEqual([1, 2]);
    // The group is one job in flight until both its requests stop waiting.
    b.release();
    expect(coalescer.inFlightOf('m')).toBe(1);
    c.release();
    c.release();
    expect(coalescer.inFlightOf('m')).toBe(0);
  });

  it('sends a full group at once, even with the limit in flight', () => {
    const { coalescer, sent } = harness({ max: 3, inFlightLimit: 1, delayMs: 10_000 });
    coalescer.join('m', 'a');
    for (const item of ['b', 'c', 'd', 'e']) coalescer.join('m', item);
    expect(sent.map((group) => group.items)).toEqual([['a'], ['b', 'c', 'd']]);
    expect(coalescer.inFlightOf('m')).toBe(2);
  });

  it('sends a pending group after the delay at the latest', () => {
    jest.useFakeTimers();
    const { coalescer, sent } = harness({ max: 8, inFlightLimit: 1, delayMs: 5 });
    coalescer.join('m', 'a');
    coalescer.join('m', 'b');
    jest.advanceTimersByTime(4);
    expect(sent).toHaveLength(1);
    jest.advanceTimersByTime(1);
    expect(sent.map((group) => group.items)).toEqual([['a'], ['b']]);
  });

  it('keeps models apart', () => {
    const { coalescer, sent } = harness({ max: 8, inFlightLimit: 1, delayMs: 10_000 });
    coalescer.join('m', 'a');
    coalescer.join('n', 'x');
    coalescer.join('m', 'b');
    expect(sent.map((group) => [group.model, group.items])).toEqual([
      ['m', ['a']],
      ['n', ['x']],
    ]);
  });

  it('with max 1 never groups', () => {
    const { coalescer, sent } = harness({ max: 1, inFlightLimit: 1, delayMs: 10_000 });
    for (const item of ['a', 'b', 'c']) coalescer.join('m', item);
    expect(sent.map((group) => group.items)).toEqual([['a'], ['b'], ['c']]);
  });

  it('a group of several whose every client left is dropped; one with a client still waiting is not', async () => {
    const dropped: string[] = [];
    const sent: string[] = [];
    const coalescer = new ClassifyCoalescer<string>(
      async (_model, jobId) => void sent.push(jobId),
      { max: 2, inFlightLimit: 1, delayMs: 10_000 },
      undefined,
      async (_model, jobId) => (dropped.push(jobId), true),
    );
    const single = coalescer.join('m', 'a');
    const [b, c] = [coalescer.join('m', 'b'), coalescer.join('m', 'c')];
    const [d, e] = [coalescer.join('m', 'd'), coalescer.join('m', 'e')];
    single.release(true);
    b.release(true);
    c.release(true);
    d.release(true);
    e.release(false);
    await expect(single.dropped).resolves.toBe(false);
    await expect(b.dropped).resolves.toBe(true);
    await expect(d.dropped).resolves.toBe(false);
    expect(dropped).toEqual([b.jobId]);
  });

  it("a failed send rejects every member's wait, and the job leaves the count once they release", async () => {
    const { coalescer } = harness({ max: 2, inFlightLimit: 1, delayMs: 10_000 }, new Error('redis down'));
    const a = coalescer.join('m', 'a');
    await expect(a.sent).rejects.toThrow('redis down');
    a.release();
    expect(coalescer.inFlightOf('m')).toBe(0);
  });
});

describe('classify request ids', () => {
  const uuid = '8acb6747-4d0f-4705-a25e-e1baf37e8a84';
  it('reads a job UUID and a coalesced item id, and nothing else', () => {
    expect(parseClassifyId(uuid)).toEqual({ jobId: uuid, index: undefined });
    expect(parseClassifyId(classifyItemId(uuid, 7))).toEqual({ jobId: uuid, index: 7 });
    for (const bad of [`${uuid}.`, `${uuid}.07`, `${uuid}.-1`, `${uuid}.12345`, `an-${uuid}`, `${uuid}.1.2`, 'faces-abc']) expect(parseClassifyId(bad)).toBeUndefined();
  });
});
