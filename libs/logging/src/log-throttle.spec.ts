import { LogThrottle } from './log-throttle';

describe('LogThrottle', () => {
  it('lets one line through per interval with the count held back, and a different key at once', () => {
    const now = jest.spyOn(Date, 'now');
    try {
      const throttle = new LogThrottle(10_000);
      now.mockReturnValue(1_000);
      expect(throttle.pass('refused')).toBe(0);
      now.mockReturnValue(5_000);
      expect(throttle.pass('refused')).toBeUndefined();
      expect(throttle.pass('refused')).toBeUndefined();
      now.mockReturnValue(11_000);
      expect(throttle.pass('refused')).toBe(2);
      now.mockReturnValue(12_000);
      expect(throttle.pass('timed out')).toBe(0);
      expect(throttle.pass('timed out')).toBeUndefined();
    } finally {
      now.mockRestore();
    }
  });
});
