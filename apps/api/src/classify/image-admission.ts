import { inspectImage, ImageInfo, ImageLimits } from '@app/imaging';
import { CrashSubject, PoisonImages, PoisonVerdict } from '@app/storage/poison-images';

/**
 * The checks a classify request's image passes before it is queued, run together: its header (inspectImage: sharp
 * reads the bytes on a libuv thread) and its poison verdict (one HMGET). Both are awaited before either's error is
 * thrown, because the route frees the bytes as soon as it settles (ImageUploadReader.release detaches their memory):
 * with Promise.all a poison verdict or a Redis error that came first let the route free the body while libvips still
 * read it, a read of freed memory (SIGSEGV of the API under glibc malloc, for any image large enough to be mmapped).
 * The header's error wins when both fail (an image fault says more than Redis trouble).
 * (No Nest decorators: its spec loads it without Nest.)
 */
export async function admitImage(bytes: Buffer, limits: ImageLimits, poison: Pick<PoisonImages, 'assertNotPoison'>, subject: CrashSubject): Promise<{ image: ImageInfo; verdict: PoisonVerdict }> {
  const [inspected, judged] = await Promise.allSettled([inspectImage(bytes, limits), poison.assertNotPoison(subject)]);
  if (inspected.status === 'rejected') throw inspected.reason;
  if (judged.status === 'rejected') throw judged.reason;
  return { image: inspected.value, verdict: judged.value };
}
