import { isLoopbackHost } from './loopback';

describe('isLoopbackHost', () => {
  it('accepts only loopback', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) expect(isLoopbackHost(host)).toBe(true);
    for (const host of ['10.0.0.1', '192.168.1.1', '8.8.8.8', 'example.com', '::ffff:8.8.8.8', '0.0.0.0']) expect(isLoopbackHost(host)).toBe(false);
  });
});
