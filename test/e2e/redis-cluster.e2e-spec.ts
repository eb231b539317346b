import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { expectedTop5, fixture } from '../support/fixtures';
import { multipart, request } from '../support/http';
import { TestCluster } from '../support/test-cluster';
import { errorLines } from '../support/test-stack';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const hashOf = (name: string) => sha256(fixture(name));

/**
 * The real API and worker on a local three-primary Redis Cluster (REDIS_CLUSTER_NODES, no REDIS_URL): every
 * route family works, every multi-key script and transaction stays in one slot (Redis refuses one that does not:
 * CROSSSLOT), and the keys land where docs/ARCHITECTURE.md says.
 */
describe('Redis Cluster (three primaries on loopback, real API and worker)', () => {
  let cluster: TestCluster;
  let storageDir: string;
  let api: AppProcess;
  let worker: AppProcess;
  let env: Record<string, string>;

  beforeAll(async () => {
    cluster = await TestCluster.start(3);
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-cluster-images-'));
    env = { REDIS_CLUSTER_NODES: cluster.nodes, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', FACE_WAIT_MS: '30000', API_KEYS: 'alice:alice-key,bob:bob-key' };
    [api, worker] = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]);
  });

  afterAll(async () => {
    await Promise.all([api?.stop(), worker?.stop()]);
    await cluster?.stop();
    if (storageDir) rmSync(storageDir, { recursive: true, force: true });
  });

  const as = (key: string, init: RequestInit = {}): RequestInit => ({ ...init, headers: { ...(init.headers as Record<string, string>), 'x-api-key': key } });

  /** The events of one of alice's images, read to the end (the server closes the stream when every model is done). */
  const fetchEvents = async (hash: string) => {
    const response = await fetch(`${api.url}/v1/images/${hash}/events`, { headers: { 'x-api-key': 'alice-key' }, signal: AbortSignal.timeout(60_000) });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    return (await response.text())
      .split('\n\n')
      .filter((block) => /^(event|data):/m.test(block))
      .map((block) => ({ event: /^event: (.*)$/m.exec(block)?.[1] ?? 'message', data: JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null') }));
  };

  it('a REDIS_URL naming one of its nodes stops either app at start, pointing at REDIS_CLUSTER_NODES (not 500s for MOVED keys)', async () => {
    for (const kind of ['api', 'worker'] as const) {
      const app = await AppProcess.spawn(kind, { ...env, REDIS_CLUSTER_NODES: '', REDIS_URL: `redis://127.0.0.1:${cluster.ports[0]}` });
      expect(await app.exitCode()).toBe(1);
      expect(app.logsWith(`${kind}.cannot_start`)[0]?.msg).toMatch(/is a node of a Redis Cluster \(cluster_enabled:1\): unset REDIS_URL and give the cluster's nodes in REDIS_CLUSTER_NODES/);
    }
  });

  it('is ready, and /v1/models lists the worker (heartbeat script and its live set share a slot)', async () => {
    expect((await request(`${api.url}/health/ready`)).status).toBe(200);
    const models = await request(`${api.url}/v1/models`, as('alice-key'));
    expect(models.status).toBe(200);
    expect(JSON.stringify(models.body)).toContain('mobilenet_v2');
  });

  it('classifies synchronously: bytes in Redis, the job through BullMQ on {iiq}, the answer by QueueEvents', async () => {
    const response = await request(`${api.url}/v1/classify`, as('alice-key', { method: 'POST', body: multipart({ image: { bytes: fixture('castle_image.jpg'), filename: 'castle.jpg' } }) }));
    expect(response.status).toBe(200);
    expect(response.body.predictions[0].label).toBe(expectedTop5('mobilenet_v2', 'castle_image.jpg')[0].label);
  });

  it('analyses: submitted, followed over SSE to the end, results read by hash', async () => {
    const names = ['dog_beagle_jemma.png', 'faces_obama_biden.jpg'];
    // The worker's PUBLISH (inside its PUT_RESULT script, on the image's slot) reaches a subscriber on any node.
    const subscriber = cluster.client();
    const published: string[] = [];
    subscriber.on('message', (channel: string, model: string) => published.push(`${channel} ${model}`));
    await subscriber.subscribe(...names.map((name) => `iiq:{alice}:events:image:${hashOf(name)}`));
    const form = multipart({ models: 'mobilenet_v2,yunet' });
    for (const name of names) form.append('images', new Blob([fixture(name)]), name);
    const submitted = await request(`${api.url}/v1/analyses`, as('alice-key', { method: 'POST', body: form }));
    expect(submitted.status).toBe(202);
    for (const name of names) {
      const events = await fetchEvents(hashOf(name));
      expect(events.filter((e) => e.event === 'result').map((e) => e.data.model).sort()).toEqual(['mobilenet_v2', 'yunet']);
      expect(events[events.length - 1].event).toBe('done');
    }
    subscriber.disconnect();
    expect(published.sort()).toEqual(names.flatMap((name) => ['mobilenet_v2', 'yunet'].map((model) => `iiq:{alice}:events:image:${hashOf(name)} ${model}`)).sort());
    const dog = await request(`${api.url}/v1/images/${hashOf('dog_beagle_jemma.png')}/results/mobilenet_v2`, as('alice-key'));
    expect(dog.body.result.predictions[0].label).toBe(expectedTop5('mobilenet_v2', 'dog_beagle_jemma.png')[0].label);
    const faces = await request(`${api.url}/v1/images/${hashOf('faces_obama_biden.jpg')}/results/yunet`, as('alice-key'));
    expect(faces.body.result.faces).toHaveLength(2);
    // Another tenant's slot: bob has no such image.
    expect((await request(`${api.url}/v1/images/${hashOf('dog_beagle_jemma.png')}`, as('bob-key'))).status).toBe(404);
  });

  it('faces: two photos of the same person match each other (insert and finish scripts with declared keys)', async () => {
    const post = (name: string) => request(`${api.url}/v1/faces`, as('alice-key', { method: 'POST', body: multipart({ image: { bytes: fixture(name), filename: name } }) }));
    const first = await post('face_obama_1.jpg');
    expect(first.status).toBe(200);
    expect(first.body.faces).toHaveLength(1);
    const second = await post('face_obama_2.jpg');
    expect(second.status).toBe(200);
    expect(second.body.matchedImages).toEqual([hashOf('face_obama_1.jpg')]);
    expect(second.body.faces[0].matches[0]).toMatchObject({ faceId: first.body.faces[0].faceId, imageHash: hashOf('face_obama_1.jpg') });
    const grown = await request(`${api.url}/v1/images/${hashOf('face_obama_1.jpg')}/matches`, as('alice-key'));
    expect(grown.body.matchedImages).toEqual([hashOf('face_obama_2.jpg')]);
  });

  it('erases an image: its faces leave the other image’s match sets, nothing of it is left on any node', async () => {
    const gone = hashOf('face_obama_1.jpg');
    const erased = await request(`${api.url}/v1/images/${gone}`, as('alice-key', { method: 'DELETE' }));
    expect(erased.status).toBe(200);
    expect(erased.body).toMatchObject({ imageHash: gone, existed: true, removedFaces: 1, updatedImages: 1, removedBytes: true });
    expect((await request(`${api.url}/v1/images/${gone}`, as('alice-key'))).status).toBe(404);
    const left = await request(`${api.url}/v1/images/${hashOf('face_obama_2.jpg')}/matches`, as('alice-key'));
    expect(left.status).toBe(200);
    expect(left.body.matchedImages).toEqual([]);
    expect(left.body.faces[0].matches).toEqual([]);
    for (const keys of (await cluster.keysByNode()).values()) expect(keys.filter((key) => key.includes(gone))).toEqual([]);
  });

  it('keeps BullMQ’s keys in one slot and each tenant’s in its own; keys spread over more than one node', async () => {
    const byNode = await cluster.keysByNode();
    const nodeOf = (pattern: RegExp) => new Set([...byNode].filter(([, keys]) => keys.some((key) => pattern.test(key))).map(([port]) => port));
    expect(nodeOf(/^\{iiq\}:inference:/).size).toBe(1);
    expect(nodeOf(/^iiq:\{alice\}:/).size).toBe(1);
    expect(nodeOf(/^\{iiq:workers\}/).size).toBe(1);
    const client = cluster.client();
    try {
      const slots = new Set<number>();
      for (const keys of byNode.values()) for (const key of keys.filter((k) => k.startsWith('{iiq}:'))) slots.add((await client.cluster('KEYSLOT', key)) as number);
      expect(slots.size).toBe(1);
    } finally {
      client.disconnect();
    }
    expect([...byNode.values()].filter((keys) => keys.length > 0).length).toBeGreaterThan(1);
    for (const app of [api, worker]) expect(errorLines(app)).toEqual([]);
  });

  it('refuses to start with REDIS_URL beside REDIS_CLUSTER_NODES, or a QUEUE_PREFIX without braces', async () => {
    for (const [extra, message] of [
      [{ REDIS_URL: 'redis://127.0.0.1:6390' }, /REDIS_URL: is set, and so is REDIS_CLUSTER_NODES/],
      [{ QUEUE_PREFIX: 'iiq' }, /QUEUE_PREFIX: "iiq" has no braces, and REDIS_CLUSTER_NODES is set/],
    ] as const) {
      const refused = await AppProcess.spawn('api', { ...env, ...extra });
      expect(await refused.exitCode(30_000)).not.toBe(0);
      expect(refused.logs.map((line) => String(line.msg)).join('\n')).toMatch(message);
    }
  });
});
