import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import pino, { Logger } from 'pino';
import { faceIdStem, RedisKeys, TenantId } from '@app/contracts';
import { FaceIndex } from '../../apps/worker/src/faces/face-index';
import { DIMENSIONS, stranger, Xorshift } from '../../bench/face-identities';
import { AppProcess, LogLine } from '../support/app-process';
import { faceIndexOnRedis } from '../support/face-index-on-redis';
import { fixture } from '../support/fixtures';
import { postImage, request } from '../support/http';
import { until } from '../support/load';
import { storeFace as storeStoredFace } from '../support/stored-face';
import { TestRedis } from '../support/test-redis';

const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');
const hashOf = (name: string) => sha256(fixture(name));

/**
 * Redis losing recent writes (a restart without the last second of its AOF, a failover, a restore; FLUSHALL on
 * the test's own Redis stands in for it) makes the tenant's face counter restart lower. A running worker must
 * notice that its view is ahead of the log, rebuild it from the log as it is now, and never view a snapshot
 * file saved beyond the log: else faces numbered again below its cursor never enter its view.
 */
describe('face log gone back (Redis lost writes): workers rebuild from the log as it is now', () => {
  describe('the whole app (real Redis, real worker, real models)', () => {
    let redis: TestRedis;
    let client: Redis;
    let storageDir: string;
    let api: AppProcess;
    let worker: AppProcess;

    beforeAll(async () => {
      redis = await TestRedis.start();
      client = redis.client();
      storageDir = mkdtempSync(join(tmpdir(), 'iiq-facelog-'));
      const env = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', FACE_WAIT_MS: '30000' };
      [api, worker] = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]);
    });

    afterAll(async () => {
      await Promise.all([api, worker].filter(Boolean).map((app) => app.stop()));
      client?.disconnect();
      await redis?.stop();
      rmSync(storageDir, { recursive: true, force: true });
    });

    const submit = async (name: string) => {
      const response = await postImage(`${api.url}/v1/faces`, fixture(name), name);
      expect(response.status).toBe(200);
      return response.body;
    };

    it('after FLUSHALL, the group photo finds both Obama photos and both Biden photos, both ways, without restarting the worker', async () => {
      // Face work before the loss: the worker's cursor reaches 6, with Obama 2 numbered last.
      for (const name of ['face_biden_1.jpg', 'face_obama_1.jpg', 'face_biden_2.jpg', 'faces_obama_biden.jpg', 'face_obama_2.jpg']) await submit(name);
      expect(await client.get('iiq:{default}:faces:seq')).toBe('6');

      await client.flushall();

      // The same photos again, in another order: numbers 1–6 are given out again, to other faces.
      for (const name of ['face_obama_1.jpg', 'face_obama_2.jpg', 'face_biden_1.jpg', 'face_biden_2.jpg']) await submit(name);
      const group = await submit('faces_obama_biden.jpg');
      expect(group.faces).toHaveLength(2);
      const [left, right] = [...group.faces].sort((a: any, b: any) => a.box.x - b.box.x);
      const obama = [hashOf('face_obama_1.jpg'), hashOf('face_obama_2.jpg')].sort();
      const biden = [hashOf('face_biden_1.jpg'), hashOf('face_biden_2.jpg')].sort();
      expect(left.matches.map((m: any) => m.imageHash).sort()).toEqual(obama);
      expect(right.matches.map((m: any) => m.imageHash).sort()).toEqual(biden);
      // And from the other side: Obama 2 lists the group photo.
      const obama2 = await request(`${api.url}/v1/images/${hashOf('face_obama_2.jpg')}/matches`);
      expect(obama2.body.matchedImages).toContain(hashOf('faces_obama_biden.jpg'));

      // One warning, naming the tenant and the numbers: the worker had applied 6; the counter was at 1 when the
      // first insert found it (or at 0, when the worker's 15-second check of idle tenants came first).
      const warnings = worker.logsWith('faces.log_regressed');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ level: 'warn', tenant: 'default', before: 6 } as Partial<LogLine>);
      expect(warnings[0].after).toBeLessThanOrEqual(1);
      expect(worker.exited).toBe(false);
    });
  });

  describe('FaceIndex on a real Redis: snapshots beyond the log, and numbers given out again past the cursor', () => {
    const tenant = 'acme' as TenantId;
    const keys = new RedisKeys('iiq');
    const onRedis = faceIndexOnRedis(keys);
    const open = (storageDir: string, log?: Logger) => onRedis.open(storageDir, 8, log);

    /** A stored image with one face, inserted as a worker inserts it, its tenant listed among the face tenants. */
    const storeFace = async (name: string, embedding: Float32Array) => {
      await onRedis.client.sadd(keys.faceTenants(), tenant);
      return storeStoredFace(onRedis.client, onRedis.store, keys, tenant, name, embedding);
    };

    const logged = (sink: Record<string, unknown>[]) => pino({ level: 'warn' }, { write: (line: string) => sink.push(JSON.parse(line)) });
    const regressions = (sink: Record<string, unknown>[]) => sink.filter((line) => line.action === 'faces.log_regressed');
    const runningWarnings: Record<string, unknown>[] = [];
    let running: FaceIndex;
    const random = new Xorshift(3);

    it('counter below the cursor: a snapshot saved beyond the log is deleted and never viewed; the running worker rebuilds and finds the faces numbered again', async () => {
      const storageDir = mkdtempSync(join(tmpdir(), 'iiq-facelog-index-'));
      onRedis.dirs.push(storageDir);
      for (let i = 0; i < 40; i++) await storeFace(`before-${i}`, stranger(random));
      running = await open(storageDir, logged(runningWarnings));
      await until(() => running.describe(tenant)?.indexed === 40, 30_000, 'every face to settle into the index');
      const saved = await running.saveSnapshot(tenant);
      expect(saved).toMatch(/faces-40-40-\d+\.usearch$/);

      await onRedis.client.flushall();
      const probe = stranger(random);
      const after: { faceId: string; seq: number }[] = [];
      for (let i = 0; i < 10; i++) after.push(await storeFace(`after-${i}`, i === 7 ? probe : stranger(random)));

      // A worker starting now must not view the file (it covers numbers 11–40 the log no longer has, and 1–10
      // name other faces now): it deletes it, says so once, and builds from the log.
      const startingWarnings: Record<string, unknown>[] = [];
      const starting = await open(storageDir, logged(startingWarnings));
      expect(existsSync(saved!)).toBe(false);
      expect(readdirSync(join(storageDir, tenant, '.face-index')).filter((name) => name.endsWith('.usearch'))).toEqual([]);
      expect(regressions(startingWarnings)).toEqual([expect.objectContaining({ tenant, before: 40, after: 10, discardedSnapshots: [saved] })]);
      expect(starting.describe(tenant)).toMatchObject({ lastSeq: 10, base: 0 });
      expect((await starting.match(tenant, probe, 0.99)).matches.map((m) => m.faceId)).toEqual([after[7].faceId]);

      // The running worker, at its next read of the log, drops its view and rebuilds it from the log.
      const found = await running.match(tenant, probe, 0.99);
      expect(found.matches.map((m) => m.faceId)).toEqual([after[7].faceId]);
      expect(running.describe(tenant)).toMatchObject({ lastSeq: 10, base: 0 });
      expect(running.size).toBe(10);
      expect(regressions(runningWarnings)).toEqual([expect.objectContaining({ tenant, before: 40 })]);
    });

    it('counter past the cursor before the worker reads again: the entry it applied last, now another face, tells it', async () => {
      expect(running.describe(tenant)).toMatchObject({ lastSeq: 10 });
      await onRedis.client.flushall();
      const probe = stranger(random);
      const after: { faceId: string; seq: number }[] = [];
      for (let i = 0; i < 15; i++) after.push(await storeFace(`again-${i}`, i === 3 ? probe : stranger(random)));
      // Face 4 is numbered below the worker's cursor (10): only a rebuild brings it into its view.
      const found = await running.match(tenant, probe, 0.99);
      expect(found.matches.map((m) => m.faceId)).toEqual([after[3].faceId]);
      expect(running.describe(tenant)).toMatchObject({ lastSeq: 15 });
      expect(running.size).toBe(15);
      expect(regressions(runningWarnings)).toHaveLength(2);
      expect(regressions(runningWarnings)[1]).toMatchObject({ tenant, before: 10, after: 15 });
    });

    it('an insert answering a counter below what the worker applied: the new face, numbered below the cursor, is synced and compared', async () => {
      expect(running.describe(tenant)).toMatchObject({ lastSeq: 15 });
      await onRedis.client.flushall();
      const probe = stranger(random);
      const earlier = await storeFace('probe-earlier', probe);
      expect(earlier.seq).toBe(1);
      // The worker's own insert gets number 2, far below its cursor (15): no sync would have read it.
      const hash = sha256('probe-later');
      await onRedis.client.hset(keys.tenant(tenant).image(hash), 'size', '1');
      const faceId = `${faceIdStem(tenant, hash)}-0`;
      const matched = await running.addAndMatch(tenant, hash, [{ faceId, box: { x: 0, y: 0, width: 50, height: 50 }, landmarks: [], score: 1, embedding: probe }], 0.99);
      expect(matched).toEqual([expect.objectContaining({ faceId, seq: 2, matches: [expect.objectContaining({ faceId: earlier.faceId })] })]);
      expect(running.describe(tenant)).toMatchObject({ lastSeq: 2 });
      expect(regressions(runningWarnings)).toHaveLength(3);
      expect(regressions(runningWarnings)[2]).toMatchObject({ tenant, before: 15, after: 2 });
    });
  });
});
