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
