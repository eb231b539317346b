import { AppError, ErrorCode, TenantId } from '@app/contracts';
import * as inspector from '@app/imaging/image-inspector';
import { poisonError } from '@app/storage/poison-images';
import { admitImage } from './image-admission';

/**
 * The route frees the request's bytes once classify settles (ImageUploadReader.release): admission must not settle
 * while the header check (sharp, on a libuv thread) still reads them, whichever check fails first.
 */
describe('admitImage', () => {
  afterEach(() => jest.restoreAllMocks());
  const subject = { tenant: 'alice' as TenantId, imageHash: 'a'.repeat(64), model: 'mobilenet_v2' };
  const limits = { maxBytes: 1024, maxPixels: 1e6, maxFrames: 1, maxAspectRatio: 100, heic: false };

  it.each([
    ['a poison verdict', poisonError('mobilenet_v2'), ErrorCode.ImageCrashedWorker],
    ['a Redis error', new AppError(ErrorCode.ServiceUnavailable, 'Redis unreachable'), ErrorCode.ServiceUnavailable],
  ])('waits for the header check when %s comes first', async (_what, refusal, code) => {
    let finishInspection: () => void = () => undefined;
    jest.spyOn(inspector, 'inspectImage').mockImplementation(
      () => new Promise((resolve) => (finishInspection = () => resolve({ format: 'png', width: 1, height: 1, bytes: 8 }))),
    );
    let settled = false;
    const admission = admitImage(Buffer.alloc(8), limits, { assertNotPoison: () => Promise.reject(refusal) }, subject).finally(() => (settled = true));
    admission.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toBe(false);
    finishInspection();
    await expect(admission).rejects.toMatchObject({ code });
  });

  it("gives the header's error when both checks fail", async () => {
    jest.spyOn(inspector, 'inspectImage').mockRejectedValue(new AppError(ErrorCode.ImageDecodeFailed, 'bad header'));
    await expect(admitImage(Buffer.alloc(8), limits, { assertNotPoison: () => Promise.reject(poisonError('m')) }, subject)).rejects.toMatchObject({ code: ErrorCode.ImageDecodeFailed });
  });
});
