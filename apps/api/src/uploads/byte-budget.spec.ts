import { ByteBudget } from './byte-budget';
import { setTimeout as sleep } from 'node:timers/promises';

describe('ByteBudget', () => {
  it('never holds more than its capacity, and serves waiters in order', async () => {
    const budget = new ByteBudget(100, 5_000);
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      [60, 60, 30, 50].map((bytes, i) =>
        budget.withReservation(bytes, async () => {
          peak = Math.max(peak, budget.inUse);
          order.push(i);
          await sleep(20);
        }),
      ),
    );
    expect(peak).toBeLessThanOrEqual(100);
    expect(order).toEqual([0, 1, 2, 3]);
    expect(budget.inUse).toBe(0);
  });

  it('refuses with 503 SERVICE_UNAVAILABLE and Retry-After when nothing frees up in time, and gives back on errors', async () => {
    const budget = new ByteBudget(10, 50);
    const holder = budget.withReservation(10, () => sleep(300));
    await expect(budget.withReservation(5, async () => 'never')).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE', details: { retryAfterSeconds: 2 } });
    await holder;
    await expect(budget.withReservation(10, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(budget.inUse).toBe(0);
  });
});

describe('ByteBudget reservations that shrink', () => {
  it('gives back what is above the new size at once (to waiters, and within the holder’s share), the rest on release', async () => {
    const budget = new ByteBudget(100, 1_000);
    const big = await budget.acquire(50, 'alice');
    const waiting = budget.acquire(40, 'alice'); // alice is at her half (50)
    big.shrinkTo(10); // the 40 given back go to alice's waiting reservation at once
    const second = await waiting;
    expect(budget.inUse).toBe(50);
    big.shrinkTo(20); // never grows
    expect(budget.inUse).toBe(50);
    big();
    big();
    second();
    expect(budget.inUse).toBe(0);
  });
});

describe('ByteBudget holders', () => {
  it('one holder gets at most half the budget: its further reservations wait for its own, others are served past them', async () => {
    const budget = new ByteBudget(100, 1_000);
    const first = await budget.acquire(40, 'greedy');
    let secondGranted = false;
    const second = budget.acquire(40, 'greedy').then((release) => ((secondGranted = true), release));
    const other = await budget.acquire(40, 'polite');
    await sleep(20);
    expect(secondGranted).toBe(false);
    first();
    (await second)();
    expect(secondGranted).toBe(true);
    other();
    expect(budget.inUse).toBe(0);
    // A holder waiting for its own share blocks nobody, even when the budget could not hold it either.
    const full = new ByteBudget(100, 1_000);
    const hog = await full.acquire(50, 'hog');
    const bystander = await full.acquire(10, 'bystander');
    const hogAgain = full.acquire(50, 'hog').catch(() => undefined);
    const fair = await Promise.race([full.acquire(30, 'fair'), sleep(200).then(() => undefined)]);
    expect(fair).toBeDefined();
    fair!();
    hog();
    bystander();
    await hogAgain;
    // A holder that waits past the limit is refused, and holds nothing afterwards.
    const tight = new ByteBudget(100, 50);
    const held = await tight.acquire(50, 'greedy');
    await expect(tight.acquire(10, 'greedy')).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    held();
    expect(tight.inUse).toBe(0);
  });
});
