import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { ErrorCode } from '@app/contracts';
import { heicDecoder } from './heic/heic-decoder';
import { readImageHeader } from './image-format';

const ROOT = join(__dirname, '..', '..', '..', '..');
const fixture = (name: string) => readFileSync(join(ROOT, 'test', 'fixtures', name));
const on = { heic: true };

/** Format detection is libvips' loader choice (plus libheif's codec for HEIF): what is accepted is what decodes. */
describe('readImageHeader', () => {
  afterAll(() => heicDecoder.close());

  it('names every accepted format, including ones the old magic-byte check refused (BigTIFF)', async () => {
    const castle = fixture('castle_image.jpg');
    const encoded: [string, Buffer][] = [
      ['jpeg', castle],
      ['png', await sharp(castle).png().toBuffer()],
      ['webp', await sharp(castle).webp().toBuffer()],
      ['gif', await sharp(castle).gif().toBuffer()],
      ['tiff', await sharp(castle).tiff().toBuffer()],
      ['tiff', await sharp(castle).tiff({ bigtiff: true }).toBuffer()],
      ['avif', await sharp(castle).avif().toBuffer()],
    ];
    for (const [format, bytes] of encoded) await expect(readImageHeader(bytes, on)).resolves.toMatchObject({ format, width: 800, height: 480, frames: 1 });
  });

  it('an AVIF whose ftyp major brand is mif1 (avif only among the compatible brands) is AVIF', async () => {
    const bytes = fixture('outside/castle_small_brand_mif1.avif');
    expect(bytes.toString('latin1', 8, 12)).toBe('mif1');
    await expect(readImageHeader(bytes, on)).resolves.toMatchObject({ format: 'avif', width: 64, height: 64 });
  });

  it('HEIC is HEIC, by its HEVC image items, and refused as unsupported when HEIC_ENABLED is false', async () => {
    const bytes = fixture('outside/face_obama_1.heic');
    await expect(readImageHeader(bytes, on)).resolves.toMatchObject({ format: 'heic', width: 910, height: 1137 });
    await expect(readImageHeader(bytes, { heic: false })).rejects.toMatchObject({ code: ErrorCode.ImageUnsupportedFormat, message: expect.stringContaining('HEIC_ENABLED=false') });
  });

  it('refuses what no allowed libvips loader claims (SVG, text, PPM) as unsupported, and lists what is accepted', async () => {
    const refused = [fixture('hostile/plain.svg'), fixture('hostile/xxe.svg'), fixture('hostile/text.jpg'), Buffer.from('P6\n2 2\n255\n' + '\0'.repeat(12), 'latin1')];
    for (const bytes of refused) {
      await expect(readImageHeader(bytes, on)).rejects.toMatchObject({ code: ErrorCode.ImageUnsupportedFormat, message: expect.stringContaining('JPEG, PNG, WebP, GIF, TIFF, AVIF, HEIC') });
    }
  });

  it('reads a file by its path as well (an upload streamed to disk), HEIF included', async () => {
    const path = (name: string) => join(ROOT, 'test', 'fixtures', name);
    await expect(readImageHeader(path('castle_image.jpg'), on)).resolves.toMatchObject({ format: 'jpeg', width: 800, height: 480 });
    await expect(readImageHeader(path('outside/face_obama_1.heic'), on)).resolves.toMatchObject({ format: 'heic', width: 910, height: 1137 });
    await expect(readImageHeader(path('made/face_obama_1_exif6.avif'), on)).resolves.toMatchObject({ format: 'avif', width: 910, height: 1137, heifOrientation: 6 });
  });

  it('a recognised format whose header is broken is a decode failure, not an unsupported format', async () => {
    await expect(readImageHeader(fixture('castle_image.jpg').subarray(0, 100), on)).rejects.toMatchObject({ code: ErrorCode.ImageDecodeFailed });
  });
});
