import { createHash } from 'node:crypto';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, postImage, request } from '../support/http';
import { until } from '../support/load';
import { TestRedis } from '../support/test-redis';
import { setTimeout as sleep } from 'node:timers/promises';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const hashOf = (name: string) => sha256(fixture(name));

/** Face matching with real models on real photos: two APIs and two workers sharing one Redis and image store. */
describe('face matching (real Redis, real models, 2 APIs + 2 workers)', () => {
  let redis: TestRedis;
  let storageDir: string;
  let apis: AppProcess[];
  let workers: AppProcess[];

  beforeAll(async () => {
    redis = await TestRedis.start();
    storageDir = mkdtempSync(join(tmpdir(), 'iiq-faces-'));
    const env = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, ORT_INTRA_OP_THREADS: '1', FACE_WAIT_MS: '30000', FETCH_ALLOW_HOSTS: '127.0.0.1', FETCH_TIMEOUT_MS: '3000' };
    const started = await Promise.all([AppProcess.start('api', env), AppProcess.start('api', env), AppProcess.start('worker', env), AppProcess.start('worker', env)]);
    apis = started.slice(0, 2);
    workers = started.slice(2);
  });

  afterAll(async () => {
    await Promise.all([...(apis ?? []), ...(workers ?? [])].map((app) => app.stop()));
    await redis?.stop();
    rmSync(storageDir, { recursive: true, force: true });
  });

  const submit = (name: string, api = apis[0]) => postImage(`${api.url}/v1/faces`, fixture(name), name);
  const matchedImages = (body: any) => body.faces.flatMap((face: any) => face.matches.map((m: any) => m.imageHash));
  const facesProcessed = () => workers.flatMap((worker) => worker.logsWith('faces.matched'));

  it('castle: no faces, "no matches found"', async () => {
    const response = await submit('castle_image.jpg');
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ imageHash: hashOf('castle_image.jpg'), faces: [], matchedImages: [], message: 'no matches found' });
  });

  it('Obama then Obama: the second matches the first, and the first’s match set grows', async () => {
    const first = await submit('face_obama_1.jpg');
    expect(first.status).toBe(200);
    expect(first.body.faces).toHaveLength(1);
    expect(first.body.message).toBe('no matches found');
    const face = first.body.faces[0];
    expect(face.landmarks).toHaveLength(5);
    expect(face.box.width).toBeGreaterThan(100);

    const second = await submit('face_obama_2.jpg', apis[1]);
    expect(second.status).toBe(200);
    expect(second.body.matchedImages).toEqual([hashOf('face_obama_1.jpg')]);
    expect(second.body.faces[0].matches[0].similarity).toBeGreaterThan(0.6);
    expect(second.body.faces[0].matches[0].faceId).toBe(face.faceId);
    expect(second.body.message).toBeUndefined();

    const grown = await request(`${apis[0].url}/v1/images/${hashOf('face_obama_1.jpg')}/matches`);
    expect(grown.body.matchedImages).toEqual([hashOf('face_obama_2.jpg')]);
  });

  it('Biden then Biden: match each other and not Obama', async () => {
    expect((await submit('face_biden_1.jpg')).body.matchedImages).toEqual([]);
    const second = await submit('face_biden_2.jpg');
    expect(second.body.matchedImages).toEqual([hashOf('face_biden_1.jpg')]);
  });

  it('faces_obama_biden.jpg: two faces, each matched to the right person only', async () => {
    const response = await submit('faces_obama_biden.jpg');
    expect(response.status).toBe(200);
    expect(response.body.faces).toHaveLength(2);
    const [left, right] = [...response.body.faces].sort((a: any, b: any) => a.box.x - b.box.x);
    const obama = [hashOf('face_obama_1.jpg'), hashOf('face_obama_2.jpg')].sort();
    const biden = [hashOf('face_biden_1.jpg'), hashOf('face_biden_2.jpg')].sort();
    expect(left.matches.map((m: any) => m.imageHash).sort()).toEqual(obama);
    expect(right.matches.map((m: any) => m.imageHash).sort()).toEqual(biden);
    expect([...response.body.matchedImages].sort()).toEqual([...obama, ...biden].sort());
  });

  it('a Sheldon crop never matches Howard', async () => {
    expect((await submit('face_crop_howard_1.png')).body.faces).toHaveLength(1);
    const sheldon = await submit('face_crop_sheldon_1.png');
    expect(sheldon.body.faces).toHaveLength(1);
    expect(matchedImages(sheldon.body)).not.toContain(hashOf('face_crop_howard_1.png'));
  });

  it('submitting the same image again answers from stored data without new inference', async () => {
    // Count this image's lines only, once its line is in: a log line can trail the answer it belongs to.
    const processedObama2 = () => facesProcessed().filter((line) => line.imageHash === hashOf('face_obama_2.jpg')).length;
    await until(() => processedObama2() >= 1, 10_000, "obama_2's faces.matched line");
    const before = processedObama2();
    const again = await submit('face_obama_2.jpg', apis[1]);
    expect(again.status).toBe(200);
    expect(again.body.faces).toHaveLength(1);
    // it now also matches the two-person photo that came later
    expect([...again.body.matchedImages].sort()).toEqual([hashOf('face_obama_1.jpg'), hashOf('faces_obama_biden.jpg')].sort());
    await sleep(300);
    expect(processedObama2()).toBe(before);
  });

  it('two images of one person submitted at the same moment through two APIs and two workers match each other', async () => {
    // New bytes (a tag appended after the JPEG end marker) make new images of the same person.
    const variant = (name: string, tag: string) => Buffer.concat([fixture(name), Buffer.from(tag)]);
    const one = variant('face_obama_1.jpg', 'concurrent-a');
    const two = variant('face_obama_2.jpg', 'concurrent-b');
    const [first, second] = await Promise.all([postImage(`${apis[0].url}/v1/faces`, one, 'one.jpg'), postImage(`${apis[1].url}/v1/faces`, two, 'two.jpg')]);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    const firstMatches = (await request(`${apis[0].url}/v1/images/${sha256(one)}/matches`)).body.matchedImages;
    const secondMatches = (await request(`${apis[1].url}/v1/images/${sha256(two)}/matches`)).body.matchedImages;
    expect(firstMatches).toContain(sha256(two));
    expect(secondMatches).toContain(sha256(one));
    const processedBy = () => facesProcessed()
      .filter((line) => line.imageHash === sha256(one) || line.imageHash === sha256(two))
      .map((line) => line.pid);
    await until(() => processedBy().length >= 2, 10_000, 'both workers to log their faces.matched line');
    await sleep(300);
    expect(processedBy()).toHaveLength(2);
  });

  it('DELETE removes the image from every match set, and the index forgets its face', async () => {
    const obama1 = hashOf('face_obama_1.jpg');
    const removed = await request(`${apis[0].url}/v1/images/${obama1}/faces`, { method: 'DELETE' });
    expect(removed.status).toBe(200);
    // Both erasure routes report the snapshot purge (DELETE …/faces did not say removedSnapshots: red team, stop 32).
    expect(removed.body).toMatchObject({ removedFaces: 1, removedSnapshots: expect.any(Number), snapshotPurgePending: false });
    for (const name of ['face_obama_2.jpg', 'faces_obama_biden.jpg']) {
      const matches = await request(`${apis[1].url}/v1/images/${hashOf(name)}/matches`);
      expect(matches.body.matchedImages).not.toContain(obama1);
      for (const face of matches.body.faces) expect(face.matches.map((m: any) => m.imageHash)).not.toContain(obama1);
    }
    expect((await request(`${apis[0].url}/v1/images/${obama1}/matches`)).status).toBe(404);
    // a new Obama photo no longer finds the forgotten one
    const fresh = Buffer.concat([fixture('face_obama_2.jpg'), Buffer.from('after-delete')]);
    const response = await postImage(`${apis[0].url}/v1/faces`, fresh, 'fresh.jpg');
    expect(response.body.matchedImages).not.toContain(obama1);
    expect(response.body.matchedImages.length).toBeGreaterThan(0);
  });

  it('answers list at most FACE_MATCHES_MAX matches, strongest first, with the full counts', async () => {
    const capped = await AppProcess.start('api', { REDIS_URL: redis.url, STORAGE_DIR: storageDir, FACE_WAIT_MS: '30000', FACE_MATCHES_MAX: '1' });
    try {
      // Three copies of one photo that differ only after the JPEG's end: three images, one face each, all matching.
      const copies = ['cap-a', 'cap-b', 'cap-c'].map((tail) => Buffer.concat([fixture('face_biden_2.jpg'), Buffer.from(tail)]));
      for (const bytes of copies) expect((await postImage(`${capped.url}/v1/faces`, bytes, 'copy.jpg')).status).toBe(200);
      const view = (await request(`${capped.url}/v1/images/${sha256(copies[0])}/matches`)).body;
      expect(view.faces[0].matches).toHaveLength(1);
      expect(view.faces[0].matchCount).toBeGreaterThanOrEqual(2);
      expect(view.matchedImages).toHaveLength(1);
      expect(view.matchedImageCount).toBeGreaterThanOrEqual(2);
      // The uncapped API lists them all from the same stored sets.
      const full = (await request(`${apis[0].url}/v1/images/${sha256(copies[0])}/matches`)).body;
      expect(full.matchedImages.length).toBe(full.matchedImageCount);
    } finally {
      await capped.stop();
    }
  });

  it('an image already stored by an analysis is matched by its hash, without sending it again', async () => {
    const biden = Buffer.concat([fixture('face_biden_2.jpg'), Buffer.from('stored-by-analysis')]);
    const analysis = await request(`${apis[0].url}/v1/analyses`, { method: 'POST', body: multipart({ images: { bytes: biden, filename: 'biden.jpg' }, models: 'yunet' }) });
    expect(analysis.status).toBe(202);
    const byHash = (imageHash: unknown) =>
      request(`${apis[1].url}/v1/faces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ imageHash }) });
    const matched = await byHash(sha256(biden));
    expect(matched.status).toBe(200);
    expect(matched.body.imageHash).toBe(sha256(biden));
    expect(matched.body.faces).toHaveLength(1);
    expect(matched.body.matchedImages).toEqual(expect.arrayContaining([hashOf('face_biden_1.jpg'), hashOf('face_biden_2.jpg')]));
    expect(matched.body.matchedImages).not.toContain(hashOf('face_obama_2.jpg'));
    // Not stored, not an id, not a string: each refused with its own code.
    const unknown = await byHash('0'.repeat(64));
    expect({ status: unknown.status, code: unknown.body.error.code }).toEqual({ status: 404, code: 'NOT_FOUND' });
    expect(unknown.body.error.message).toContain('send the image itself');
    for (const bad of ['../../etc/passwd', 42]) expect((await byHash(bad)).body.error.code).toBe('INVALID_PARAMETER');
  });

  it('refuses bad ids on every faces route with 400', async () => {
    expect((await request(`${apis[0].url}/v1/images/..%2F..%2Fetc%2Fpasswd/matches`)).status).toBe(400);
    expect((await request(`${apis[0].url}/v1/images/..%2F..%2Fetc%2Fpasswd/faces`, { method: 'DELETE' })).status).toBe(400);
  });

  describe('URL intake (a local server on 127.0.0.1, allowed by FETCH_ALLOW_HOSTS; nothing else is contacted)', () => {
    let server: Server;
    let base: string;
    const timers = new Set<NodeJS.Timeout>();

    beforeAll(async () => {
      server = createServer((req, res) => {
        const port = (server.address() as AddressInfo).port;
        if (req.url === '/biden.jpg') return res.end(fixture('face_biden_1.jpg'));
        if (req.url === '/to-biden') return res.writeHead(302, { location: '/biden.jpg' }).end();
        if (req.url === '/to-other-loopback') return res.writeHead(302, { location: `http://127.0.0.2:${port}/biden.jpg` }).end();
        if (req.url === '/loop') return res.writeHead(302, { location: '/loop' }).end();
        if (req.url === '/endless') {
          // a trickle that never ends: bounded here too (stops when the client leaves or after 20 s)
          res.writeHead(200, { 'content-type': 'image/jpeg' });
          const timer = setInterval(() => res.write(Buffer.alloc(16)), 50);
          timers.add(timer);
          const stop = () => {
            clearInterval(timer);
            timers.delete(timer);
            res.destroy();
          };
          res.on('close', stop);
          setTimeout(stop, 20_000).unref();
          return;
        }
        if (req.url === '/huge') {
          // 12 MiB without a content-length: the limit must be enforced while streaming
          res.writeHead(200, { 'content-type': 'image/jpeg' });
          const chunk = Buffer.alloc(256 * 1024, 1);
          let sent = 0;
          const pump = () => {
            while (sent < 48 && !res.destroyed) {
              sent++;
              if (!res.write(chunk)) return res.once('drain', pump);
            }
            res.end();
          };
          res.on('close', () => (sent = 48));
          return pump();
        }
        res.writeHead(404).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      for (const timer of timers) clearInterval(timer);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    const byUrl = (url: string) =>
      request(`${apis[0].url}/v1/faces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url }) });

    it('fetches from the allowed local server, following a redirect, and matches', async () => {
      const response = await byUrl(`${base}/to-biden`);
      expect(response.status).toBe(200);
      expect(response.body.imageHash).toBe(hashOf('face_biden_1.jpg'));
      expect(response.body.faces).toHaveLength(1);
    });

    it('POST /v1/analyses takes URLs too, under the same rules', async () => {
      const analyse = (url: string) =>
        request(`${apis[0].url}/v1/analyses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls: [url], models: ['yunet'] }) });
      const accepted = await analyse(`${base}/to-biden`);
      expect(accepted.status).toBe(202);
      expect(accepted.body.images[0].hash).toBe(hashOf('face_biden_1.jpg'));
      const refused = await analyse(base.replace('127.0.0.1', '127.0.0.2') + '/biden.jpg');
      expect(refused.status).toBe(400);
      expect(refused.body.error.code).toBe('URL_NOT_ALLOWED');
    });

    const refusals: [string, () => string, number, string][] = [
      ['a loopback address outside the allowance (127.0.0.2)', () => base.replace('127.0.0.1', '127.0.0.2') + '/biden.jpg', 400, 'URL_NOT_ALLOWED'],
      ['IPv6 loopback [::1]', () => base.replace('127.0.0.1', '[::1]') + '/biden.jpg', 400, 'URL_NOT_ALLOWED'],
      ['a redirect from the allowed server to another loopback address', () => `${base}/to-other-loopback`, 400, 'URL_NOT_ALLOWED'],
      ['file:///etc/passwd', () => 'file:///etc/passwd', 400, 'URL_NOT_ALLOWED'],
      ['the metadata address in decimal form', () => 'http://2852039166/latest/meta-data/', 400, 'URL_NOT_ALLOWED'],
      ['a redirect loop', () => `${base}/loop`, 422, 'URL_FETCH_FAILED'],
      ['an endless response', () => `${base}/endless`, 422, 'URL_FETCH_FAILED'],
      ['an oversized body', () => `${base}/huge`, 413, 'IMAGE_TOO_LARGE'],
    ];
    for (const [name, url, status, code] of refusals) {
      it(`refuses ${name} with ${status} ${code}`, async () => {
        const response = await byUrl(url());
        expect(response.status).toBe(status);
        expect(response.body.error.code).toBe(code);
        expect(response.body.error.message.length).toBeGreaterThan(10);
      });
    }
  });
});
