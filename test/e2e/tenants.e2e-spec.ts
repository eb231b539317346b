import { createHash, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, request, HttpResult } from '../support/http';
import { until } from '../support/load';
import { analyzeJobId, matchFacesJobId } from '@app/contracts/queues';
import { asTenantId } from '@app/contracts/tenant';
import { TestRedis } from '../support/test-redis';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const hashOf = (name: string) => sha256(fixture(name));

const KEYS = { alice: 'alice-key-1', alice2: 'alice-key-2', bob: 'bob-key', lonely: 'lonely-key' };
const API_KEYS = `alice:${KEYS.alice},alice:${KEYS.alice2},bob:${KEYS.bob},${KEYS.lonely}`;

/** Every key in the test's own Redis with everything it holds, as text (small: one test's data). */
async function dumpRedis(client: Redis): Promise<{ key: string; text: string }[]> {
  const keys = await client.keys('*');
  const dumped: { key: string; text: string }[] = [];
  for (const key of keys) {
    const type = await client.type(key);
    let value: unknown;
    if (type === 'string') value = (await client.getBuffer(key))?.toString('latin1');
    else if (type === 'hash') value = await client.hgetall(key);
    else if (type === 'set') value = await client.smembers(key);
    else if (type === 'zset') value = await client.zrange(key, '0', '-1');
    else if (type === 'list') value = await client.lrange(key, 0, -1);
    else if (type === 'stream') value = await client.xrange(key, '-', '+');
    dumped.push({ key, text: JSON.stringify(value) });
  }
  return dumped;
}

/**
 * Two tenants on one deployment (alice with two keys, bob, and a bare key that is a tenant of its own), two
 * API processes and one worker, real models: nothing of one tenant is visible to, changeable by, or matched
 * against another, on any route, including any route added later (the OpenAPI walk).
 */
describe('tenants: every record belongs to the caller, and another tenant’s record is answered as missing', () => {
  let redis: TestRedis;
  let client: Redis;
  let storageDir: string;
  let apis: AppProcess[];
  let worker: AppProcess;

  const call = (key: string, path: string, init: RequestInit = {}, api = apis[0]) =>
    request(`${api.url}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), 'x-api-key': key } });
  const analyse = (key: string, names: string[], models = 'mobilenet_v2,yunet', api = apis[0]) => {
    const form = multipart({ models });
    for (const name of names) form.append('images', new Blob([fixture(name)]), name);
    return call(key, '/v1/analyses', { method: 'POST', body: form }, api);
  };
  const faces = (key: string, name: string, api = apis[0]) => call(key, '/v1/faces', { method: 'POST', body: multipart({ image: { bytes: fixture(name), filename: name } }) }, api);
  const allDone = async (key: string, hash: string) => {
    await until(
      async () => {
        const described = await call(key, `/v1/images/${hash}`);
        return Object.values(described.body.models ?? { x: { state: 'waiting' } }).every((view: any) => view.state === 'completed' || view.state === 'failed');
      },
      60_000,
      `the analyses of ${hash.slice(0, 12)}`,
      100,
    );
  };

  let aliceJobId: string;
  const aliceOnly = { castle: hashOf('castle_image.jpg'), obama1: hashOf('face_obama_1.jpg'), obama2: hashOf('face_obama_2.jpg'), kitten: hashOf('cat_kitten_224.png') };
  let aliceFaceIds: string[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    client = redis.client();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-tenants-'));
    const env = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', FACE_WAIT_MS: '30000', API_KEYS, RATE_LIMIT_MAX: '0' };
    const started = await Promise.all([AppProcess.start('api', env), AppProcess.start('api', env), AppProcess.start('worker', env)]);
    apis = started.slice(0, 2);
    worker = started[2];

    // Alice's world: a classify job, analyses of four photos, and two matched photos of one person.
    const classified = await call(KEYS.alice, '/v1/classify', { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixture('castle_image.jpg') });
    expect(classified.status).toBe(200);
    aliceJobId = classified.body.id;
    expect((await analyse(KEYS.alice, ['castle_image.jpg', 'face_obama_1.jpg', 'face_obama_2.jpg', 'cat_kitten_224.png'])).status).toBe(202);
    for (const hash of Object.values(aliceOnly)) await allDone(KEYS.alice, hash);
    const first = await faces(KEYS.alice, 'face_obama_1.jpg');
    const second = await faces(KEYS.alice2, 'face_obama_2.jpg', apis[1]);
    expect(second.body.matchedImages).toEqual([aliceOnly.obama1]);
    aliceFaceIds = [...first.body.faces, ...second.body.faces].map((face: any) => face.faceId);
  });

  afterAll(async () => {
    client?.disconnect();
    await Promise.all([...(apis ?? []), worker].filter(Boolean).map((app) => app.stop()));
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  it("a tenant's two keys see the same records; the other tenant and a bare key see none of them", async () => {
    expect((await call(KEYS.alice2, `/v1/images/${aliceOnly.castle}`)).status).toBe(200);
    // Two different keys in one request act for neither (Authorization used to win over x-api-key).
    const both = await call(KEYS.bob, `/v1/images/${aliceOnly.castle}`, { headers: { authorization: `Bearer ${KEYS.alice}` } });
    expect(both.status).toBe(401);
    expect(both.body.error.message).toContain('more than one API key');
    // Authorization twice: Node kept the first and dropped the second, so the order of the headers chose the caller.
    for (const order of [[KEYS.bob, KEYS.alice], [KEYS.alice, KEYS.bob]]) {
      const twice = await withRawHeaders(`${apis[0].url}/v1/images/${aliceOnly.castle}`, ['Host', new URL(apis[0].url).host, ...order.flatMap((key) => ['Authorization', `Bearer ${key}`])]);
      expect(twice).toEqual({ status: 401, message: expect.stringContaining('more than one API key') });
    }
    expect((await call(KEYS.alice, `/v1/images/${aliceOnly.castle}`, { headers: { authorization: `Bearer ${KEYS.alice}` } })).status).toBe(200);
    expect((await call(KEYS.alice2, `/v1/jobs/${aliceJobId}`)).body.result.predictions[0].label).toBe('castle');
    for (const key of [KEYS.bob, KEYS.lonely]) {
      expect((await call(key, `/v1/images/${aliceOnly.castle}`)).status).toBe(404);
      expect((await call(key, `/v1/jobs/${aliceJobId}`)).status).toBe(404);
    }
  });

  it('every route of the OpenAPI document that takes a hash or a job id answers the other tenant exactly as for one that does not exist', async () => {
    const document = (await request(`${apis[0].url}/docs/json`)).body;
    const routes = Object.entries(document.paths as Record<string, Record<string, unknown>>).filter(([path]) => /\{(hash|id)\}/.test(path));
    // The walk covers the routes known today, and any added later.
    expect(routes.map(([path]) => path)).toEqual(expect.arrayContaining(['/v1/images/{hash}', '/v1/images/{hash}/content', '/v1/images/{hash}/events', '/v1/images/{hash}/faces', '/v1/images/{hash}/matches', '/v1/images/{hash}/results/{model}', '/v1/jobs/{id}']));
    const fill = (path: string, hash: string, id: string) => path.replace('{hash}', hash).replace('{id}', id).replace('{model}', 'mobilenet_v2');
    const missingHash = sha256(Buffer.from(randomUUID()));
    const missingId = randomUUID();
    let tried = 0;
    for (const [path, operations] of routes) {
      for (const method of Object.keys(operations).filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m))) {
        const theirs = await call(KEYS.bob, fill(path, aliceOnly.obama1, aliceJobId), { method: method.toUpperCase() });
        const nobodys = await call(KEYS.bob, fill(path, missingHash, missingId), { method: method.toUpperCase() });
        const same = (answer: HttpResult, hash: string, id: string) => ({ status: answer.status, body: JSON.stringify(answer.body).split(hash).join('<hash>').split(id).join('<id>') });
        expect([method, path, same(theirs, aliceOnly.obama1, aliceJobId)]).toEqual([method, path, same(nobodys, missingHash, missingId)]);
        expect([method, path, theirs.status]).toEqual([method, path, 404]);
        if (method !== 'delete') {
          // The owner gets an answer, so the 404 above is about the tenant, not a broken route.
          expect([method, path, (await call(KEYS.alice, fill(path, aliceOnly.obama1, aliceJobId), { method: method.toUpperCase(), signal: AbortSignal.timeout(60_000) })).status]).not.toEqual([method, path, 404]);
        }
        tried++;
      }
    }
    expect(tried).toBeGreaterThanOrEqual(8);
    // Bob's DELETEs changed nothing of alice's.
    expect((await call(KEYS.alice, `/v1/images/${aliceOnly.obama2}/matches`)).body.matchedImages).toEqual([aliceOnly.obama1]);
    expect((await call(KEYS.alice, `/v1/images/${aliceOnly.obama1}`)).status).toBe(200);
  });

  it("POST /v1/faces by another tenant's hash is 404, as for a hash nobody stored", async () => {
    const theirs = await call(KEYS.bob, '/v1/faces', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ imageHash: aliceOnly.obama1 }) });
    expect(theirs.status).toBe(404);
    expect(theirs.body.error.message).toBe(`no stored image ${aliceOnly.obama1}: send the image itself`);
  });

  it("faces match only within a tenant: bob's photo of the same person matches nothing of alice's, and alice's matches are unchanged", async () => {
    const bobs = await faces(KEYS.bob, 'faces_obama_biden.jpg');
    expect(bobs.status).toBe(200);
    expect(bobs.body.faces).toHaveLength(2);
    expect(bobs.body.matchedImages).toEqual([]);
    const text = JSON.stringify(bobs.body);
    for (const hash of Object.values(aliceOnly)) expect(text).not.toContain(hash);
    for (const faceId of aliceFaceIds) expect(text).not.toContain(faceId);
    expect((await call(KEYS.alice, `/v1/images/${aliceOnly.obama1}/matches`)).body.matchedImages).toEqual([aliceOnly.obama2]);
    // The same person inside bob's own tenant does match.
    const again = await faces(KEYS.bob, 'face_obama_1.jpg', apis[1]);
    expect(again.body.matchedImages).toEqual([hashOf('faces_obama_biden.jpg')]);
  });

  it("the same file in two tenants: bob's records are his own (not cached from alice's, his own metadata and timings)", async () => {
    const submitted = await analyse(KEYS.bob, ['castle_image.jpg'], 'mobilenet_v2');
    expect(submitted.status).toBe(202);
    expect(submitted.body.images[0].models.mobilenet_v2.cached).toBe(false);
    await allDone(KEYS.bob, aliceOnly.castle);
    const bobs = await call(KEYS.bob, `/v1/images/${aliceOnly.castle}`);
    const alices = await call(KEYS.alice, `/v1/images/${aliceOnly.castle}`);
    expect(Object.keys(bobs.body.models)).toEqual(['mobilenet_v2']);
    expect(Object.keys(alices.body.models).sort()).toEqual(['mobilenet_v2', 'yunet']);
    expect(bobs.body.image.firstSeen).not.toBe(alices.body.image.firstSeen);
    expect(bobs.body.models.mobilenet_v2.computedAt).not.toBe(alices.body.models.mobilenet_v2.computedAt);
    const again = await analyse(KEYS.bob, ['castle_image.jpg'], 'mobilenet_v2', apis[1]);
    expect(again.body.images[0].models.mobilenet_v2.cached).toBe(true);
  });

  it("erasure: nothing of the image is left for its tenant in Redis or on disk; matches go on both sides; another tenant's copy is untouched", async () => {
    const hash = aliceOnly.obama1;
    // Bob holds the same file (analysed and face-matched in his own tenant).
    expect((await analyse(KEYS.bob, ['face_obama_1.jpg'], 'mobilenet_v2')).status).toBe(202);
    await allDone(KEYS.bob, hash);
    const before = await dumpRedis(client);
    expect(before.some(({ key, text }) => key.includes('{alice}') && (key.includes(hash) || text.includes(hash)))).toBe(true);

    const erased = await call(KEYS.alice2, `/v1/images/${hash}`, { method: 'DELETE' }, apis[1]);
    expect(erased.status).toBe(200);
    expect(erased.body).toMatchObject({ imageHash: hash, existed: true, removedFaces: 1, updatedImages: 1, removedBytes: true });
    expect(erased.body.removedResults).toBe(2);

    // Alice: gone everywhere, answered as never stored; her other image no longer names it.
    for (const path of [`/v1/images/${hash}`, `/v1/images/${hash}/content`, `/v1/images/${hash}/matches`, `/v1/images/${hash}/results/mobilenet_v2`]) {
      expect([path, (await call(KEYS.alice, path)).status]).toEqual([path, 404]);
    }
    expect((await call(KEYS.alice, `/v1/images/${hash}`, { method: 'DELETE' })).status).toBe(404);
    const obama2 = await call(KEYS.alice, `/v1/images/${aliceOnly.obama2}/matches`);
    expect(obama2.body.matchedImages).toEqual([]);
    expect(obama2.body.faces[0].matches).toEqual([]);
    const erasedFaceId = aliceFaceIds[0];
    const after = await dumpRedis(client);
    // Nothing names the image: not its hash, its face id, nor its (derivable) job ids in the queue's event stream.
    const alice = asTenantId('alice');
    const jobIds = [matchFacesJobId(alice, hash), analyzeJobId(alice, hash, 'mobilenet_v2'), analyzeJobId(alice, hash, 'yunet')];
    const leftovers = after.filter(({ key, text }) => !key.includes('{bob}') && [hash, erasedFaceId, ...jobIds].some((needle) => key.includes(needle) || text.includes(needle)));
    expect(leftovers).toEqual([]);
    expect(existsSync(join(storageDir, 'alice', hash.slice(0, 2), hash.slice(2, 4), hash))).toBe(false);
    expect(readdirSync(join(storageDir, 'alice'), { recursive: true }).map(String).filter((name) => name.includes(hash))).toEqual([]);
    // Not even an empty shard folder named by the hash's first bytes.
    expect(readdirSync(join(storageDir, 'alice'), { recursive: true }).map(String).filter((name) => name === `${hash.slice(0, 2)}/${hash.slice(2, 4)}`)).toEqual([]);

    // Bob's copy: untouched.
    expect((await call(KEYS.bob, `/v1/images/${hash}`)).body.models.mobilenet_v2.state).toBe('completed');
    const content = await fetch(`${apis[0].url}/v1/images/${hash}/content`, { headers: { 'x-api-key': KEYS.bob } });
    expect(Buffer.from(await content.arrayBuffer()).equals(fixture('face_obama_1.jpg'))).toBe(true);
    expect((await call(KEYS.bob, `/v1/images/${hash}/matches`)).body.matchedImages).toEqual([hashOf('faces_obama_biden.jpg')]);

    // A new face of the same person in alice's tenant finds obama2 but never the erased image.
    const later = await faces(KEYS.alice, 'faces_obama_biden.jpg');
    expect(later.body.matchedImages).toEqual([aliceOnly.obama2]);
  });

  it('an image whose metadata Redis lost (its bytes still stored) is registered again from its bytes: it can be read, matched by its hash and erased', async () => {
    const hash = aliceOnly.kitten;
    // What a Redis restart without persistence leaves: the bytes on disk, no metadata.
    expect(await client.del(`iiq:{alice}:image:${hash}`)).toBe(1);
    // Named by its hash for face matching: found from its bytes too, not "no stored image: send the image itself".
    const byHash = await call(KEYS.alice, '/v1/faces', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ imageHash: hash }) });
    expect(byHash.status).toBe(200);
    expect(byHash.body).toMatchObject({ imageHash: hash, faces: [] });
    // A failover to a replica that had not received the writes loses the models asked and their results too.
    const lost = [`iiq:{alice}:image:${hash}`, `iiq:{alice}:image:${hash}:models`, ...['mobilenet_v2', 'yunet'].map((model) => `iiq:{alice}:result:${hash}:${model}`)];
    expect(await client.del(...lost)).toBe(lost.length);
    const described = await call(KEYS.alice, `/v1/images/${hash}`);
    expect(described.status).toBe(200);
    expect(described.body.image).toMatchObject({ hash, format: 'png', width: 224, height: 224 });
    // The models its client asked for were noted beside the bytes: registered again, and computed again.
    expect(Object.keys(described.body.models).sort()).toEqual(['mobilenet_v2', 'yunet']);
    await allDone(KEYS.alice, hash);
    expect((await call(KEYS.alice, `/v1/images/${hash}`)).body.models.mobilenet_v2).toMatchObject({ state: 'completed', result: { predictions: expect.any(Array) } });
    // Still the owner's only: bob gets what he gets for any hash he never stored.
    expect((await call(KEYS.bob, `/v1/images/${hash}`)).status).toBe(404);
    expect((await call(KEYS.alice, `/v1/images/${hash}`, { method: 'DELETE' })).status).toBe(200);
    expect(existsSync(join(storageDir, 'alice', hash.slice(0, 2), hash.slice(2, 4), hash))).toBe(false);
    expect((await call(KEYS.alice, `/v1/images/${hash}`)).status).toBe(404);
  });

  it('erasing an image Redis lost erases its bytes as they are (nothing registered again, no model queued), and logs it with the request id', async () => {
    const variant = Buffer.concat([fixture('cat_kitten_224.png'), Buffer.from('lost-then-erased')]);
    const hash = sha256(variant);
    const form = multipart({ models: 'mobilenet_v2,yunet' });
    form.append('images', new Blob([variant]), 'kitten.png');
    expect((await call(KEYS.alice, '/v1/analyses', { method: 'POST', body: form })).status).toBe(202);
    await allDone(KEYS.alice, hash);
    const lost = await client.keys(`iiq:{alice}:*${hash}*`);
    expect(lost.length).toBeGreaterThan(0);
    await client.del(...lost);
    const erased = await call(KEYS.alice, `/v1/images/${hash}`, { method: 'DELETE' });
    expect(erased.status).toBe(200);
    // Queueing the models again would only have the erasure remove them, or a worker start on the image its client asked to erase.
    expect(erased.body.removedJobs).toBe(0);
    // A later job of the same model finishes after anything queued before it (one worker, FIFO): then no recovered job started.
    const later = Buffer.concat([fixture('dog_beagle_jemma.png'), Buffer.from('queued-after-the-erasure')]);
    const laterForm = multipart({ models: 'mobilenet_v2' });
    laterForm.append('images', new Blob([later]), 'dog.png');
    expect((await call(KEYS.alice, '/v1/analyses', { method: 'POST', body: laterForm })).status).toBe(202);
    await allDone(KEYS.alice, sha256(later));
    expect(worker.logsWith('job.started').filter((line) => line.imageHash === hash && String(line.requestId).startsWith('recovered:'))).toEqual([]);
    // Not registered again first (a write, which a full Redis refuses): the bytes and their noted models go as they are.
    expect(apis[0].logsWith('image.recovered').filter((line) => line.imageHash === hash)).toEqual([]);
    const erasedLog = apis[0].logsWith('image.erased').filter((line) => line.imageHash === hash);
    expect(erasedLog).toEqual([expect.objectContaining({ requestId: erased.headers.get('x-request-id'), service: 'api', existed: false, removedBytes: true })]);
    expect(existsSync(join(storageDir, 'alice', hash.slice(0, 2), hash.slice(2, 4), hash))).toBe(false);
    expect(existsSync(join(storageDir, 'alice', hash.slice(0, 2), hash.slice(2, 4), `${hash}.models`))).toBe(false);
    expect((await call(KEYS.alice, `/v1/images/${hash}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('an image stored before the limits were tightened is still found and erased after Redis lost its record', async () => {
    const variant = Buffer.concat([fixture('castle_image.jpg'), Buffer.from('stored-under-wider-limits')]);
    const hash = sha256(variant);
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([variant]), 'castle.jpg');
    expect((await call(KEYS.alice, '/v1/analyses', { method: 'POST', body: form })).status).toBe(202);
    await allDone(KEYS.alice, hash);
    // An API started later with a pixel limit below this 800×480 photo, sharing the Redis and the content store.
    const tight = await AppProcess.start('api', { REDIS_URL: redis.url, STORAGE_DIR: storageDir, API_KEYS, RATE_LIMIT_MAX: '0', MAX_IMAGE_PIXELS: '100000' });
    try {
      await client.del(...(await client.keys(`iiq:{alice}:*${hash}*`)));
      const described = await call(KEYS.alice, `/v1/images/${hash}`, {}, tight);
      expect(described.status).toBe(200);
      expect(described.body.image).toMatchObject({ hash, width: 800, height: 480 });
      expect((await call(KEYS.bob, `/v1/images/${hash}`, {}, tight)).status).toBe(404);
      expect((await call(KEYS.alice, `/v1/images/${hash}`, { method: 'DELETE' }, tight)).status).toBe(200);
      expect(existsSync(join(storageDir, 'alice', hash.slice(0, 2), hash.slice(2, 4), hash))).toBe(false);
      expect((await call(KEYS.alice, `/v1/images/${hash}`, {}, tight)).status).toBe(404);
    } finally {
      await tight.stop();
    }
  });

  it('an erasure racing reads of results not computed yet leaves no note of the models beside the erased bytes', async () => {
    const left: string[] = [];
    // The race is narrow (an erasure finishing between a read's addModels and its note): 4 of 40 rounds lost it.
    for (let round = 0; round < 40; round++) {
      const variant = Buffer.concat([fixture('castle_image.jpg'), Buffer.from(`note-race-${round}`)]);
      const hash = sha256(variant);
      const form = multipart({ models: 'mobilenet_v2' });
      form.append('images', new Blob([variant]), 'castle.jpg');
      expect((await call(KEYS.alice, '/v1/analyses', { method: 'POST', body: form })).status).toBe(202);
      const [erased] = await Promise.all([
        call(KEYS.alice, `/v1/images/${hash}`, { method: 'DELETE' }, apis[1]),
        ...['yolox_nano', 'yunet', 'squeezenet1_1'].map((model) => call(KEYS.alice, `/v1/images/${hash}/results/${model}`)),
      ]);
      expect(erased.status).toBe(200);
      const folder = join(storageDir, 'alice', hash.slice(0, 2), hash.slice(2, 4));
      if (existsSync(folder)) left.push(...readdirSync(folder).filter((name) => name.startsWith(hash)));
    }
    expect(left).toEqual([]);
  });

  it('erasure removes queued jobs of the image, and a job already running writes nothing back', async () => {
    const kittenVariant = Buffer.concat([fixture('cat_kitten_224.png'), Buffer.from('erase-me')]);
    const hash = sha256(kittenVariant);
    const form = multipart({ models: 'mobilenet_v2,squeezenet1_1,yolox_nano,yunet' });
    form.append('images', new Blob([kittenVariant]), 'kitten.png');
    expect((await call(KEYS.alice, '/v1/analyses', { method: 'POST', body: form })).status).toBe(202);
    const erased = await call(KEYS.alice, `/v1/images/${hash}`, { method: 'DELETE' });
    expect(erased.status).toBe(200);
    // Whatever was still running has finished by now; none of it came back.
    await until(async () => (await client.keys('{iiq}:inference:an-*')).length === 0, 30_000, 'the analysis jobs to leave the queue');
    // Nor do their ids (derived from tenant and image) stay in the event stream, even for a job that was running.
    const jobIds = ['mobilenet_v2', 'squeezenet1_1', 'yolox_nano', 'yunet'].map((model) => analyzeJobId(asTenantId('alice'), hash, model));
    const naming = async () => (await dumpRedis(client)).filter(({ key, text }) => [hash, ...jobIds].some((needle) => key.includes(needle) || text.includes(needle)));
    await until(async () => (await naming()).length === 0, 10_000, 'nothing in Redis to name the erased image or its jobs').catch(() => undefined);
    expect(await naming()).toEqual([]);
    expect((await call(KEYS.alice, `/v1/images/${hash}`)).status).toBe(404);
  });
});

/** A GET with headers in raw form (name, value, …; Host included: Node adds none then), so a header can be sent twice, which fetch cannot. */
function withRawHeaders(url: string, headers: string[]): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const sent = httpRequest(url, { headers }, (response) => {
      let text = '';
      response.on('data', (chunk) => (text += chunk));
      response.on('end', () => {
        let message = text;
        try {
          message = JSON.parse(text).error?.message ?? text;
        } catch {
          // not JSON: the text itself
        }
        resolve({ status: response.statusCode!, message });
      });
    });
    sent.on('error', reject);
    sent.end();
  });
}
