import { releaseBytes } from './release-bytes';

describe('releaseBytes', () => {
  it('frees a body that owns its memory (Buffer.concat of socket chunks, as Fastify and the multipart reader make it)', () => {
    const body = Buffer.concat([Buffer.alloc(65_536, 1), Buffer.alloc(12_377, 2)]);
    const arrayBuffer = body.buffer;
    expect(releaseBytes(body)).toBe(77_913);
    expect(arrayBuffer.byteLength).toBe(0); // detached: its backing store is gone
    expect(body.length).toBe(0);
    expect(releaseBytes(body)).toBe(0); // twice is harmless
  });

  it("leaves a slice of Node's shared pool alone (detaching it would empty its neighbours)", () => {
    const small = Buffer.from('a small body from the pool');
    const neighbour = Buffer.from('another request');
    expect(releaseBytes(small)).toBe(0);
    expect(small.toString()).toBe('a small body from the pool');
    expect(neighbour.toString()).toBe('another request');
  });

  it('leaves a view of part of a larger allocation alone', () => {
    const whole = Buffer.alloc(100_000, 7);
    const part = whole.subarray(10, 50_000);
    expect(releaseBytes(part)).toBe(0);
    expect(whole.length).toBe(100_000);
    expect(part[0]).toBe(7);
  });
});
