import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import { AppProcess, REPO_ROOT } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, postImage, request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * Data written before tenants existed is moved into a tenant by `npm run migrate:tenants`, and is then read,
 * matched and erased like any other. The old layout (docs/ARCHITECTURE.md before tenants: `<prefix>:image:<h>`,
 * `<prefix>:face:<hash24>-<n>`, files at `STORAGE_DIR/<ab>/<cd>/<h>`) is made here from data the current
 * version wrote, by moving it back.
 */
describe('migrate:tenants: data from before tenants is kept', () => {
  let redis: TestRedis;
  let client: Redis;
  let storageDir: string;
  const apps: AppProcess[] = [];
  const obama1 = fixture('face_obama_1.jpg');
  const hash = sha256(obama1);

  beforeAll(async () => {
    redis = await TestRedis.start();
    client = redis.client();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-migrate-'));
  });

  afterAll(async () => {
    client?.disconnect();
    await Promise.all(apps.map((app) => app.stop()));
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  it('moves images, results, faces, matches and files into the tenant; the apps then serve, match and erase them', async () => {
    const env = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', FACE_WAIT_MS: '30000' };
    let [api, worker] = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]);
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([obama1]), 'obama.jpg');
    await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    await until(async () => (await request(`${api.url}/v1/images/${hash}/results/mobilenet_v2`)).status === 200, 30_000, 'the analysis');
    const faces = (await postImage(`${api.url}/v1/faces`, obama1)).body;
    await Promise.all([api.stop(), worker.stop()]);

    // Back to the layout before tenants.
    const newFaceId = faces.faces[0].faceId as string;
    const oldFaceId = `${hash.slice(0, 24)}-0`;
    for (const key of await client.keys('iiq:{default}:*')) {
      let target = key.replace('iiq:{default}:', 'iiq:').replace(newFaceId, oldFaceId);
      if (target.includes(':lock:')) target = '';
      if (target) await client.rename(key, target);
      else await client.del(key);
    }
    const log = (await client.xrange('iiq:faces:log', '-', '+')) as [string, string[]][];
    await client.del('iiq:faces:log');
    for (const [id, fields] of log) await client.xadd('iiq:faces:log', id, ...fields.map((field) => (field === newFaceId ? oldFaceId : field)));
    const record = JSON.parse((await client.get(`iiq:image:${hash}:faces`))!);
    record.faceIds = [oldFaceId];
    await client.set(`iiq:image:${hash}:faces`, JSON.stringify(record));
    await client.del('iiq:faces:tenants');
    mkdirSync(join(storageDir, hash.slice(0, 2), hash.slice(2, 4)), { recursive: true });
    renameSync(join(storageDir, 'default', hash.slice(0, 2), hash.slice(2, 4), hash), join(storageDir, hash.slice(0, 2), hash.slice(2, 4), hash));
    rmSync(join(storageDir, 'default'), { recursive: true, force: true });

    const migration = spawnSync(process.execPath, [join(REPO_ROOT, 'dist/apps/api/src/maintenance/migrate-tenants.js'), '--tenant', 'default'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', REDIS_URL: redis.url, STORAGE_DIR: storageDir },
      encoding: 'utf8',
    });
    expect(migration.stderr).toBe('');
    expect(JSON.parse(migration.stdout)).toMatchObject({ action: 'migrate.tenants', tenant: 'default', images: 1, results: 1, faces: 1, files: 1 });
    expect((await client.keys('iiq:*')).filter((key) => !key.startsWith('iiq:{') && !key.startsWith('iiq:faces:tenants'))).toEqual([]);
    expect(existsSync(join(storageDir, hash.slice(0, 2)))).toBe(false);

    [api, worker] = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]);
    apps.push(api, worker);
    expect((await request(`${api.url}/v1/images/${hash}`)).body.models.mobilenet_v2.state).toBe('completed');
    expect((await request(`${api.url}/v1/images/${hash}/content`)).status).toBe(200);
    // A new photo of the same person matches the migrated face (the worker loaded the migrated log).
    const second = await postImage(`${api.url}/v1/faces`, fixture('face_obama_2.jpg'));
    expect(second.body.matchedImages).toEqual([hash]);
    expect((await request(`${api.url}/v1/images/${hash}/matches`)).body.faces[0].matches[0].imageHash).toBe(sha256(fixture('face_obama_2.jpg')));
    const erased = await request(`${api.url}/v1/images/${hash}`, { method: 'DELETE' });
    expect(erased.body).toMatchObject({ existed: true, removedFaces: 1, removedResults: 1, removedBytes: true });
  });
});
