import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { request } from '../support/http';
import { TestRedis } from '../support/test-redis';
import { TestStack } from '../support/test-stack';

const IMAGES = 250_000;
const TENANTS = ['default', 'alice', 'bob', 'carol'];

/** One command in Redis' wire protocol (what `redis-cli --pipe` reads). */
function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

/**
 * Four keys per analysed image, shaped as the product writes them (libs/contracts/src/redis-keys.ts): metadata
 * hash, models set, one result with its TTL, and the face record. 250,000 images make a million keys.
 */
function* productKeys(): Generator<string> {
  for (let i = 0; i < IMAGES; i++) {
    const hash = createHash('sha256').update(String(i)).digest('hex');
    const t = `iiq:{${TENANTS[i % TENANTS.length]}}`;
    const result = JSON.stringify({ state: 'completed', model: 'mobilenet_v2', task: 'classification', result: { predictions: [{ index: 483, label: 'castle', probability: 0.72 }] }, computedAt: '2026-11-23T10:00:00.000Z', workerId: 'w:1', inferenceMs: 3.4 });
    yield resp('HSET', `${t}:image:${hash}`, 'hash', hash, 'bytes', '183022', 'format', 'jpeg', 'width', '640', 'height', '480', 'firstSeen', '2026-11-23T10:00:00.000Z') +
      resp('SADD', `${t}:image:${hash}:models`, 'mobilenet_v2', 'yolox_nano') +
      resp('SET', `${t}:result:${hash}:mobilenet_v2`, result, 'EX', '604800') +
      resp('SET', `${t}:image:${hash}:faces`, '{"faceIds":[],"skippedFaces":[],"computedAt":"2026-11-23T10:00:00.000Z"}');
  }
}

/** Streams the keys into `redis-cli --pipe` (with back-pressure) and resolves with its summary line. */
function loadKeys(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const cli = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--pipe'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let output = '';
    cli.stdout.on('data', (chunk) => (output += chunk));
    cli.on('error', reject);
    cli.on('close', (code) => (code === 0 ? resolve(output.trim()) : reject(new Error(`redis-cli --pipe exited ${code}: ${output}`))));
    const keys = productKeys();
    const pump = () => {
      for (;;) {
        const next = keys.next();
        if (next.done) return cli.stdin.end();
        if (!cli.stdin.write(next.value)) return cli.stdin.once('drain', pump);
      }
    };
    pump();
  });
}

/**
 * Readiness and /v1/models on a Redis that holds a million keys (a quarter of a million analysed images, a few
 * days of real use): both answer, see the live worker, and run no command whose cost grows with the keyspace.
 * INFO commandstats counts what ran; a SCAN over the keyspace used to make readiness miss its 1 s limit.
 */
describe('fault: a million keys in Redis', () => {
  const stack = new TestStack();
  afterAll(() => stack.stop());

  it('readiness and /v1/models answer without walking the keyspace', async () => {
    const redis = await stack.startRedis();
    const started = Date.now();
    const summary = await loadKeys(redis.port);
    const client = stack.client();
    const keys = await client.dbsize();
    expect(keys).toBeGreaterThanOrEqual(4 * IMAGES);
    const loadMs = Date.now() - started;
    const usedMemory = Number(/^used_memory:(\d+)/m.exec(await client.info('memory'))![1]);
    const [api] = await Promise.all([stack.start('api'), stack.start('worker')]);

    await client.config('RESETSTAT');
    const timings: Record<string, number[]> = { ready: [], models: [] };
    for (let i = 0; i < 10; i++) {
      let t = Date.now();
      const ready = await request(`${api.url}/health/ready`);
      timings.ready.push(Date.now() - t);
      expect(ready.status).toBe(200);
      expect(ready.body.info.workers.count).toBe(1);
      t = Date.now();
      const models = await request(`${api.url}/v1/models`);
      timings.models.push(Date.now() - t);
      expect(models.status).toBe(200);
      expect(models.body.workers).toHaveLength(1);
      expect(models.body.models.find((m: { name: string }) => m.name === 'mobilenet_v2').loaded).toBe(true);
    }
    const calls = await TestRedis.commandCalls(client);
    // Nothing that walks the keyspace ran meanwhile, from any process (commands inside scripts count too).
    for (const command of ['scan', 'keys']) expect(`${command}: ${calls[command] ?? 0}`).toBe(`${command}: 0`);
    const median = (list: number[]) => [...list].sort((a, b) => a - b)[list.length >> 1];
    console.log(
      `Keyspace: ${keys} keys loaded by redis-cli --pipe in ${loadMs} ms (${summary.split('\n').pop()}), ${(usedMemory / 1024 / 1024).toFixed(0)} MB ` +
        `(${Math.round(usedMemory / IMAGES)} bytes per analysed image: metadata, models, one result, face record); readiness median ${median(timings.ready)} ms, /v1/models median ${median(timings.models)} ms; ` +
        `commands run meanwhile: ${Object.entries(calls).map(([name, count]) => `${name} ${count}`).join(', ')}`,
    );
  });
});
