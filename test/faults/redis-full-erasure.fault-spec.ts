import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { analyzeJobId, asTenantId, matchFacesJobId } from '@app/contracts';
import { fixture } from '../support/fixtures';
import { HttpResult, multipart, request } from '../support/http';
import { until } from '../support/load';
import { TestStack } from '../support/test-stack';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * A full Redis (maxmemory reached under noeviction, the production setting) refuses every command that may grow
 * memory. Reads and erasures must still go through, so a tenant can delete data to make room: the rate limiter
 * (a Redis script that writes) lets GET and DELETE pass when Redis refuses it for memory, and the erasure routes
 * free before they write. Uploads and new jobs still answer 503 + Retry-After, an event stream that must queue a
 * pair ends with an error event saying the same, and a request without a valid key gets its 401, never a 503.
 * Raising maxmemory brings everything back.
 */
describe('fault: a full Redis (OOM under noeviction) still serves reads and erasures', () => {
  const stack = new TestStack();
  const key = 'tenant-a-key';
  const auth = { authorization: `Bearer ${key}` };
  const obama1 = fixture('face_obama_1.jpg');
  const obama2 = fixture('face_obama_2.jpg');
  const castle = fixture('castle_image.jpg');

  afterAll(() => stack.stop());

  it('GET answers 200, DELETE erases, an upload gets 503 + Retry-After; all works again once maxmemory is raised', async () => {
    const redis = await stack.startRedis({ args: ['--maxmemory-policy', 'noeviction'] });
    const client = stack.client(redis);
    const api = await stack.start('api', { API_KEYS: `tenant-a:${key}`, REQUEST_WAIT_MS: '20000', FACE_WAIT_MS: '30000' }, redis);
    await stack.start('worker', {}, redis);
    const call = (path: string, init: RequestInit = {}): Promise<HttpResult> => request(`${api.url}${path}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } });
    const faces = (bytes: Buffer) => call('/v1/faces', { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: bytes });
    const analyse = (bytes: Buffer, name: string) => {
      const form = multipart({ models: 'mobilenet_v2' });
      form.append('images', new Blob([bytes]), name);
      return call('/v1/analyses', { method: 'POST', body: form });
    };

    // Tenant A's data: two photos of one person (each the other's match) and an analysed image.
    const [hash1, hash2, castleHash] = [sha256(obama1), sha256(obama2), sha256(castle)];
    expect((await faces(obama1)).status).toBe(200);
    const second = await faces(obama2);
    expect(second.status).toBe(200);
    expect(second.body.matchedImages).toEqual([hash1]);
    expect((await analyse(castle, 'castle.jpg')).status).toBe(202);
    await until(async () => (await call(`/v1/images/${castleHash}/results/mobilenet_v2`)).status === 200, 30_000, 'the castle analysis');

    // An image whose record Redis lost (bytes on disk only, as after lost writes): erasable on a full Redis too.
    const kitten = fixture('cat_kitten_224.png');
    const kittenHash = sha256(kitten);
    expect((await analyse(kitten, 'kitten.png')).status).toBe(202);
    await until(async () => (await call(`/v1/images/${kittenHash}/results/mobilenet_v2`)).status === 200, 30_000, 'the kitten analysis');
    const kittenRecord = (await client.keys(`*:image:${kittenHash}`)).filter((name) => !name.includes(':image:' + kittenHash + ':'));
    expect(kittenRecord).toHaveLength(1);
    await client.del(kittenRecord[0]);

    // Fill Redis: keys of our own, then a cap 1 MB below what is used. Redis stays over its limit.
    for (let i = 0; i < 32; i++) await client.set(`filler:${i}`, Buffer.alloc(64 * 1024));
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
    await client.config('SET', 'maxmemory', String(used - 1024 * 1024));
    await expect(client.set('one-more', 'x')).rejects.toThrow(/^OOM/);
    const fullSince = Date.now();

    // Reads go through.
    const described = await call(`/v1/images/${castleHash}`);
    expect(`${described.status} ${JSON.stringify(described.body.error ?? '')}`).toBe('200 ""');
    expect(described.body.models.mobilenet_v2.state).toBe('completed');
    expect((await call(`/v1/images/${hash1}/matches`)).status).toBe(200);
    expect((await call(`/v1/images/${castleHash}/content`)).status).toBe(200);

    // Without a valid key: 401 whatever Redis' state, never the 503 that says "try later" (the limiter cannot count
    // the refusal in Redis now; the API counts it itself), and never the OOM pass of valid keys: with a body too.
    const anonymous = [
      await request(`${api.url}/v1/images/${castleHash}`, { headers: { authorization: 'Bearer not-a-key' } }),
      await request(`${api.url}/v1/images/${castleHash}`, { method: 'DELETE' }),
      await request(`${api.url}/v1/images/${castleHash}`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: '{"reason":"none"}' }),
      await request(`${api.url}/v1/images/${castleHash}`, { method: 'DELETE', headers: { authorization: 'Bearer not-a-key', 'content-type': 'application/json' }, body: '{}' }),
    ];
    expect(anonymous.map((answer) => `${answer.status} ${answer.body?.error?.code}`)).toEqual(anonymous.map(() => '401 UNAUTHORIZED'));

    // Uploads and new jobs: 503 with Retry-After.
    for (const refused of [await call('/v1/classify', { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: castle }), await analyse(fixture('dog_beagle_jemma.png'), 'dog.png'), await faces(fixture('face_biden_1.jpg'))]) {
      expect(`${refused.status} ${refused.body?.error?.code}`).toBe('503 SERVICE_UNAVAILABLE');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }

    // Forgetting an image's faces: out of its own record and its match's.
    const forgotten = await call(`/v1/images/${hash2}/faces`, { method: 'DELETE' });
    expect(`${forgotten.status} ${JSON.stringify(forgotten.body)}`).toBe(`200 ${JSON.stringify({ imageHash: hash2, removedFaces: 1, updatedImages: 1, removedSnapshots: 0, snapshotPurgePending: false })}`);
    expect((await call(`/v1/images/${hash2}/matches`)).status).toBe(404);
    const left = await call(`/v1/images/${hash1}/matches`);
    expect(left.status).toBe(200);
    expect(left.body.matchedImages).toEqual([]);

    // A pair with no stored result (expired) is queued again when followed, which a full Redis refuses: the event
    // stream ends with the error event a 503 would have been (code, message, wait) and an SSE retry field.
    const [castleResult] = await client.keys(`*:result:${castleHash}:mobilenet_v2`);
    expect(castleResult).toBeDefined();
    await client.del(castleResult);
    const stream = await fetch(`${api.url}/v1/images/${castleHash}/events`, { headers: auth });
    expect(stream.status).toBe(200);
    const events = await stream.text();
    const error = /(?:^|\n)retry: (\d+)\nevent: error\ndata: (.*)\n\n$/.exec(events);
    expect(error?.[1]).toBe('10000');
    expect(JSON.parse(error![2])).toEqual({ hash: castleHash, code: 'SERVICE_UNAVAILABLE', message: expect.stringMatching(/^the queue store \(Redis\) is out of memory/), retryAfterSeconds: 10 });

    // Erasing images: the metadata, results, faces and bytes go.
    expect(existsSync(join(stack.storageDir, 'tenant-a', hash1.slice(0, 2), hash1.slice(2, 4), hash1))).toBe(true);
    const tenant = asTenantId('tenant-a');
    for (const hash of [castleHash, hash1, hash2, kittenHash]) {
      const erased = await call(`/v1/images/${hash}`, { method: 'DELETE' });
      expect(`${erased.status} ${JSON.stringify(erased.body.error ?? '')}`).toBe('200 ""');
      expect(erased.body).toMatchObject({ imageHash: hash, existed: true, removedBytes: true });
      expect((await call(`/v1/images/${hash}`)).status).toBe(404);
      expect(existsSync(join(stack.storageDir, 'tenant-a', hash.slice(0, 2), hash.slice(2, 4), hash))).toBe(false);
      // Nothing left in Redis: no key names the image, nor its jobs.
      expect(await client.keys(`*${hash}*`)).toEqual([]);
      for (const jobId of [matchFacesJobId(tenant, hash), analyzeJobId(tenant, hash, 'mobilenet_v2')]) expect(await client.keys(`*${jobId}*`)).toEqual([]);
    }
    expect(await client.keys('*:face:*')).toEqual([]);
    expect((await call(`/v1/images/${hash1}/matches`)).status).toBe(404);
    // Erased again: 404 (nothing half-deleted that a retry would find).
    expect((await call(`/v1/images/${castleHash}`, { method: 'DELETE' })).status).toBe(404);

    // One warning line per 10 s for the limiter skipped, however many requests.
    const skipped = api.logs.filter((line) => line.action === 'ratelimit.skipped');
    expect(skipped.length).toBeGreaterThanOrEqual(1);
    expect(skipped.length).toBeLessThanOrEqual(1 + Math.floor((Date.now() - fullSince) / 10_000));
    expect(skipped[0]).toMatchObject({ level: 'warn', method: 'GET' });
    // Errors only for the refused uploads (503).
    expect(api.logs.filter((line) => line.level === 'error' && line.status !== 503)).toEqual([]);

    // Room again: uploads and analyses work, and the erased image can be stored anew.
    await client.config('SET', 'maxmemory', '0');
    const again = await analyse(castle, 'castle.jpg');
    expect(again.status).toBe(202);
    expect((await faces(obama1)).status).toBe(200);
    expect((await call(`/v1/images/${hash1}/matches`)).status).toBe(200);
    expect((await call(`/v1/images/${castleHash}`)).status).toBe(200);
  });
});
