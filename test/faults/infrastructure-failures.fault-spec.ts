import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from '../support/app-process';
import { fixture } from '../support/fixtures';
import { multipart, request } from '../support/http';
import { until } from '../support/load';
import { TestStack } from '../support/test-stack';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * Only failures that are properties of the image are remembered. A worker started with the wrong STORAGE_DIR
 * fails analyses and face searches with INPUT_EXPIRED; once it is fixed, sending the same images again computes
 * them (no cached failure, no kept failed face job answering 410). A truncated JPEG's failure is remembered and
 * not computed again.
 */
describe('fault: failures of the infrastructure are not remembered as bad images', () => {
  const stack = new TestStack();
  const wrongDir = mkdtempSync(join(tmpdir(), 'iiq-infra-wrong-'));
  let api: AppProcess;
  let worker: AppProcess;
  const castle = fixture('castle_image.jpg');
  const face = fixture('face_obama_1.jpg');
  const truncated = castle.subarray(0, 20_000);
  const env = { JOB_ATTEMPTS: '2', FACE_WAIT_MS: '15000' };

  const analyse = async (bytes: Buffer) => {
    const form = multipart({ models: 'mobilenet_v2' });
    form.append('images', new Blob([bytes]), 'image.jpg');
    const answer = await request(`${api.url}/v1/analyses`, { method: 'POST', body: form });
    expect(answer.status).toBe(202);
    return answer.body.images[0].models.mobilenet_v2 as { state: string; cached: boolean };
  };
  /** The stored result once there is one (GET answers 202 while the pair is queued or running). */
  const result = async (bytes: Buffer) => {
    let answer: any;
    await until(async () => (answer = await request(`${api.url}/v1/images/${sha256(bytes)}/results/mobilenet_v2`)).status === 200, 30_000, 'an analysis result');
    return answer.body;
  };
  const faces = (bytes: Buffer) => request(`${api.url}/v1/faces`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: bytes });

  beforeAll(async () => {
    await stack.startRedis();
    api = await stack.start('api', env);
  });

  afterAll(async () => {
    await stack.stop();
    rmSync(wrongDir, { recursive: true, force: true });
  });

  it('a worker with the wrong STORAGE_DIR fails; once fixed, the same images are computed, not answered from those failures', async () => {
    const misconfigured = await stack.start('worker', { ...env, STORAGE_DIR: wrongDir });
    expect((await analyse(castle)).cached).toBe(false);
    const firstFaces = await faces(face);
    expect(firstFaces.body.error?.code).toBe('INPUT_EXPIRED');
    // Failed for good: after its attempts, nothing of it left waiting, delayed for a retry or running.
    const queue = stack.client();
    const settled = async () => (await Promise.all([queue.zcard('{iiq}:inference:prioritized'), queue.zcard('{iiq}:inference:delayed'), queue.llen('{iiq}:inference:active'), queue.llen('{iiq}:inference:wait')])).every((n) => n === 0);
    await until(async () => misconfigured.logsWith('job.failed').some((line) => line.jobName === 'analyze') && (await settled()), 30_000, 'the analysis to fail for good');
    await misconfigured.stop();

    worker = await stack.start('worker', env);
    const again = await analyse(castle);
    expect(again.state === 'failed' || again.cached).toBe(false);
    expect((await result(castle)).state).toBe('completed');
    const facesAgain = await faces(face);
    expect(facesAgain.status).toBe(200);
    expect(facesAgain.body.faces).toHaveLength(1);
  });

  it('a truncated JPEG fails once, and that failure is what later requests get', async () => {
    expect((await analyse(truncated)).cached).toBe(false);
    const stored = await result(truncated);
    expect(stored).toMatchObject({ state: 'failed', error: { code: 'IMAGE_DECODE_FAILED' } });
    expect(await analyse(truncated)).toMatchObject({ state: 'failed', cached: true });

    const first = await faces(truncated);
    const second = await faces(truncated);
    expect([first.status, first.body.error.code]).toEqual([422, 'IMAGE_DECODE_FAILED']);
    expect([second.status, second.body.error.code]).toEqual([422, 'IMAGE_DECODE_FAILED']);
    // Each (image, kind of work) ran once: the second requests were answered from what was remembered.
    const runs = worker.logsWith('job.started').filter((line) => line.imageHash === sha256(truncated));
    expect(runs.map((line) => line.jobName).sort()).toEqual(['analyze', 'match-faces']);
  });
});
