import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { ErrorCode } from '@app/contracts';
import { ModelCatalog } from '@app/models';
import { heicDecoder } from './heic/heic-decoder';
import { decodeRgb, orient } from './image-decoder';
import { prepareModelInput } from './model-input';

const ROOT = join(__dirname, '..', '..', '..', '..');
const fixture = (name: string) => readFileSync(join(ROOT, 'test', 'fixtures', name));
const limits = { maxPixels: 50_000_000, heic: true };
const EOI = Buffer.from([0xff, 0xd9]);

/** Mean absolute difference per sample of two same-sized decodes, 0–255. */
function meanAbsDiff(a: Buffer, b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

describe('the decode policy', () => {
  const catalog = ModelCatalog.load(join(ROOT, 'models'));
  const wholeImageModels = catalog.list().filter((model) => model.preprocess.resize !== 'face-align');

  afterAll(() => heicDecoder.close());

  it('decodes a JPEG that lacks only its end-of-image marker to the same pixels as with the marker (progressive, baseline, only D9 missing)', async () => {
    const castle = fixture('castle_image.jpg');
    const baseline = await sharp(castle).jpeg({ progressive: false, quality: 90 }).toBuffer();
    const withoutEoi = [fixture('outside/castle_small_no_eoi.jpg'), castle.subarray(0, castle.length - 2), castle.subarray(0, castle.length - 1), baseline.subarray(0, baseline.length - 2)];
    for (const bytes of withoutEoi) {
      const intact = bytes[bytes.length - 1] === 0xff ? Buffer.concat([bytes, EOI.subarray(1)]) : Buffer.concat([bytes, EOI]);
      const [repaired, reference] = await Promise.all([decodeRgb(bytes, limits), decodeRgb(intact, limits)]);
      expect(repaired.data.equals(reference.data)).toBe(true);
    }
  });

  it('one verdict per image: a JPEG cut at 90 % of its bytes fails for every model and for the full decode; the EOI-less one passes for all', async () => {
    const castle = fixture('castle_image.jpg');
    const baseline = await sharp(castle).jpeg({ progressive: false }).toBuffer();
    for (const whole of [castle, baseline]) {
      const cut = whole.subarray(0, Math.floor(whole.length * 0.9));
      await expect(decodeRgb(cut, limits)).rejects.toMatchObject({ code: ErrorCode.ImageDecodeFailed });
      for (const model of wholeImageModels) {
        await expect(prepareModelInput(cut, model.preprocess, limits)).rejects.toMatchObject({ code: ErrorCode.ImageDecodeFailed });
        await expect(prepareModelInput(whole.subarray(0, whole.length - 2), model.preprocess, limits)).resolves.toMatchObject({ originalWidth: 800, originalHeight: 480 });
      }
    }
  });

  it('decodes HEIC off the event loop to the pixels of the same photo saved as JPEG', async () => {
    const heic = fixture('outside/face_obama_1.heic');
    let turns = 0;
    const ticking = setInterval(() => turns++, 1);
    const [decoded, jpeg] = await Promise.all([decodeRgb(heic, limits), decodeRgb(fixture('face_obama_1.jpg'), limits)]).finally(() => clearInterval(ticking));
    // A decode on the event loop would leave no room for the timer to run while it lasts.
    expect(turns).toBeGreaterThan(3);
    expect([decoded.width, decoded.height]).toEqual([jpeg.width, jpeg.height]);
    expect(meanAbsDiff(decoded.data, jpeg.data)).toBeLessThan(6);
  });

  it('HEIF orientation: EXIF honoured when the file has no irot/imir of its own (heif-enc from a rotated JPEG), never on top of them', async () => {
    const upright = await decodeRgb(fixture('face_obama_1.jpg'), limits);
    const turnedByIrot = await sharp(fixture('face_obama_1.jpg')).rotate(270).avif({ quality: 80 }).withMetadata({ orientation: 6 }).toBuffer();
    for (const bytes of [fixture('made/face_obama_1_exif6.heic'), fixture('made/face_obama_1_exif6.avif'), turnedByIrot]) {
      const decoded = await decodeRgb(bytes, limits);
      expect([decoded.width, decoded.height]).toEqual([upright.width, upright.height]);
      expect(meanAbsDiff(decoded.data, upright.data)).toBeLessThan(8);
    }
  });

  it('orient() turns pixels as sharp turns a JPEG by its EXIF orientation, for all eight', async () => {
    const pixels = await sharp(fixture('face_crop_howard_1.png')).resize(40, 30, { fit: 'fill' }).removeAlpha().toColourspace('srgb').raw().toBuffer();
    const raw = () => sharp(pixels, { raw: { width: 40, height: 30, channels: 3 } });
    for (let orientation = 1; orientation <= 8; orientation++) {
      const tagged = await raw().png().withMetadata({ orientation }).toBuffer();
      const bySharp = await sharp(tagged).rotate().raw().toBuffer();
      const byOrient = await orient(raw(), orientation).raw().toBuffer();
      expect([orientation, byOrient.equals(bySharp)]).toEqual([orientation, true]);
    }
  });

  it('checks the pixel limit from the HEIC header before decoding, in the thread too; HEIC_ENABLED=false refuses it', async () => {
    const heic = fixture('outside/face_obama_1.heic');
    await expect(decodeRgb(heic, { maxPixels: 1_000_000, heic: true })).rejects.toMatchObject({ code: ErrorCode.ImageTooManyPixels });
    await expect(heicDecoder.decode(heic, 1_000_000)).rejects.toMatchObject({ code: ErrorCode.ImageTooManyPixels });
    await expect(decodeRgb(heic, { ...limits, heic: false })).rejects.toMatchObject({ code: ErrorCode.ImageUnsupportedFormat });
  });

  it('a HEIF file libheif cannot read fails as a decode failure and the next HEIC still decodes', async () => {
    const heic = fixture('outside/face_obama_1.heic');
    const broken = Buffer.concat([heic.subarray(0, 400), Buffer.alloc(2000, 0x5a)]);
    await expect(heicDecoder.decode(broken, limits.maxPixels)).rejects.toMatchObject({ code: ErrorCode.ImageDecodeFailed });
    await expect(heicDecoder.decode(heic, limits.maxPixels)).resolves.toMatchObject({ width: 910, height: 1137 });
  });
});
