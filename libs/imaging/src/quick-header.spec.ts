import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { readImageHeader } from './image-format';
import { quickHeader } from './quick-header';

const FIXTURES = join(__dirname, '..', '..', '..', '..', 'test', 'fixtures');
const photos = ['.', 'outside'].flatMap((dir) => readdirSync(join(FIXTURES, dir)).filter((name) => /\.(jpe?g|png)$/i.test(name)).map((name) => join(FIXTURES, dir, name)));
const on = { heic: true };

/** libvips' reading of the same bytes, or undefined when it refuses them. */
async function libvipsHeader(bytes: Buffer) {
  try {
    const { format, width, height, frames } = await readImageHeader(bytes, on);
    return { format, width, height, frames };
  } catch {
    return undefined;
  }
}

/** A small deterministic generator (xorshift32), so every run mutates the same bytes. */
function xorshift(seed: number): () => number {
  let state = seed;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

/** The fast header path must say what libvips says, or nothing (then libvips is asked). */
describe('quickHeader', () => {
  it('reads every JPEG and PNG photo of the fixtures exactly as libvips does', async () => {
    expect(photos.length).toBeGreaterThanOrEqual(10);
    for (const path of photos) {
      const bytes = readFileSync(path);
      const quick = quickHeader(bytes);
      expect({ path, header: quick && { format: quick.format, width: quick.width, height: quick.height, frames: quick.frames } }).toEqual({ path, header: await libvipsHeader(bytes) });
    }
  });

  it('turns the display size by the JPEG EXIF orientation, as libvips autoOrient does (5–8 swap the sides)', async () => {
    const castle = readFileSync(join(FIXTURES, 'castle_image.jpg'));
    for (const orientation of [1, 3, 6, 8]) {
      const bytes = await sharp(castle).withMetadata({ orientation }).jpeg().toBuffer();
      const quick = quickHeader(bytes);
      expect(quick).toMatchObject(orientation >= 5 ? { width: 480, height: 800 } : { width: 800, height: 480 });
      expect(quick).toMatchObject((await libvipsHeader(bytes))!);
    }
  });

  it('under cuts and corrupted header bytes never disagrees with libvips on a header both read', async () => {
    const random = xorshift(20261201);
    let compared = 0;
    for (const path of photos.slice(0, 8)) {
      const original = readFileSync(path);
      const variants = Array.from({ length: 8 }, (_, i) => original.subarray(0, Math.floor((original.length * (i + 1)) / 32)));
      for (let i = 0; i < 40; i++) {
        const flipped = Buffer.from(original);
        flipped[Math.floor(random() * Math.min(flipped.length, 4096))] = Math.floor(random() * 256);
        variants.push(flipped);
      }
      for (const bytes of variants) {
        const quick = quickHeader(bytes);
        const libvips = await libvipsHeader(bytes);
        if (!quick || !libvips) continue;
        compared++;
        expect({ format: quick.format, width: quick.width, height: quick.height, frames: quick.frames }).toEqual(libvips);
      }
    }
    expect(compared).toBeGreaterThan(200);
  });

  it('leaves to libvips a JPEG with two EXIF blocks, or an EXIF block without an orientation image-size reads', async () => {
    const castle = readFileSync(join(FIXTURES, 'castle_image.jpg'));
    const turned = await sharp(castle).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    // The APP1 segment right after SOI (sharp writes EXIF first), copied in once more.
    expect(turned.toString('latin1', 6, 12)).toBe('Exif\0\0');
    const app1 = turned.subarray(2, 4 + turned.readUInt16BE(4));
    const twice = Buffer.concat([turned.subarray(0, 2), app1, turned.subarray(2)]);
    expect(quickHeader(turned)).toMatchObject({ width: 480, height: 800 });
    expect(quickHeader(twice)).toBeUndefined();
    // The same EXIF block with its orientation entry renamed (tag 0x0112 → 0x0113), in either byte order.
    const noOrientation = Buffer.from(turned);
    const entry = [Buffer.from([0x01, 0x12, 0x00, 0x03]), Buffer.from([0x12, 0x01, 0x03, 0x00])].map((bytes) => noOrientation.indexOf(bytes, 12)).find((at) => at > 0 && at < app1.length)!;
    expect(entry).toBeGreaterThan(0);
    noOrientation[entry + (noOrientation[entry] === 0x01 ? 1 : 0)] = 0x13;
    expect(quickHeader(noOrientation)).toBeUndefined();
  });

  it('leaves a PNG with an EXIF orientation to libvips, which turns it as it turns a JPEG', async () => {
    const castle = readFileSync(join(FIXTURES, 'castle_image.jpg'));
    const turned = await sharp(castle).withMetadata({ orientation: 6 }).png().toBuffer();
    expect(quickHeader(turned)).toBeUndefined();
    expect(await libvipsHeader(turned)).toMatchObject({ width: 480, height: 800 });
  });

  it('leaves everything else to libvips: other formats, broken PNG chunks, JPEG segments that do not chain', async () => {
    const castle = readFileSync(join(FIXTURES, 'castle_image.jpg'));
    expect(quickHeader(await sharp(castle).webp().toBuffer())).toBeUndefined();
    expect(quickHeader(await sharp(castle).gif().toBuffer())).toBeUndefined();
    expect(quickHeader(Buffer.from('GET / HTTP/1.0\r\n\r\n'))).toBeUndefined();
    const png = await sharp(castle).png().toBuffer();
    expect(quickHeader(png)).toMatchObject({ format: 'png', width: 800, height: 480 });
    const badIhdrCrc = Buffer.from(png);
    badIhdrCrc[29] ^= 0xff;
    expect(quickHeader(badIhdrCrc)).toBeUndefined();
    const brokenLength = Buffer.from(castle);
    brokenLength[4] ^= 0x40; // the first segment's length: the next marker is no longer where it says
    expect(quickHeader(brokenLength)).toBeUndefined();
    expect(quickHeader(castle.subarray(0, 100))).toBeUndefined();
  });
});
