import { execFile } from 'node:child_process';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseLoadTestArgs } from './load-test-options';

describe('load-test flags', () => {
  it('clamps connections to the number of requests', () => {
    expect(parseLoadTestArgs(['--requests', '5']).concurrency).toBe(5);
    expect(parseLoadTestArgs(['--requests', '5', '--concurrency', '2']).concurrency).toBe(2);
    expect(parseLoadTestArgs([]).concurrency).toBe(32);
    expect(parseLoadTestArgs(['--duration', '2s', '--concurrency', '64']).concurrency).toBe(64);
  });

  it('refuses a misspelt flag and lists the valid ones', () => {
    expect(() => parseLoadTestArgs(['--concurency', '2'])).toThrow(
      'unknown option --concurency; known: --url --image --path --model --concurrency --requests --duration --rate --max-error-rate --allow-remote',
    );
  });

  it('runs 5 requests with the default concurrency against a loopback server (autocannon refused more connections than requests)', async () => {
    let served = 0;
    const server: Server = createServer((request, response) => {
      served++;
      request.resume().on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const run = await promisify(execFile)(process.execPath, [join(__dirname, 'load-test.js'), '--url', url, '--requests', '5', '--max-error-rate', '0'], {
        cwd: join(__dirname, '..', '..'),
        timeout: 30_000,
      });
      const summary = JSON.parse(run.stdout.trim().split('\n').pop()!);
      expect(summary).toMatchObject({ requests: 5, concurrency: 5, statusCounts: { 200: 5 }, errors: 0 });
      expect(served).toBe(5);
    } finally {
      server.close();
    }
  });
});
