import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
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

  it('leaves to libvips a JPEG with two EXIF blocks or an orientation that is not a SHORT 1–8; no tag is upright', async () => {
    const castle = readFileSync(join(FIXTURES, 'castle_image.jpg'));
    const turned = await sharp(castle).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    // The APP1 segment right after SOI (sharp writes EXIF first), copied in once more.
    expect(turned.toString('latin1', 6, 12)).toBe('Exif\0\0');
    const app1 = turned.subarray(2, 4 + turned.readUInt16BE(4));
    const twice = Buffer.concat([turned.subarray(0, 2), app1, turned.subarray(2)]);
    expect(quickHeader(turned)).toMatchObject({ width: 480, height: 800 });
    expect(quickHeader(twice)).toBeUndefined();
    // The orientation entry (tag 0x0112, type SHORT), in either byte order.
    const entry = [Buffer.from([0x01, 0x12, 0x00, 0x03]), Buffer.from([0x12, 0x01, 0x03, 0x00])].map((bytes) => turned.indexOf(bytes, 12)).find((at) => at > 0 && at < app1.length)!;
    const bigEndian = turned[entry] === 0x01;
    const asLong = Buffer.from(turned);
    asLong[entry + (bigEndian ? 3 : 2)] = 4;
    expect(quickHeader(asLong)).toBeUndefined();
    const renamed = Buffer.from(turned);
    renamed[entry + (bigEndian ? 1 : 0)] = 0x13;
    expect(quickHeader(renamed)).toMatchObject({ width: 800, height: 480 });
    expect(quickHeader(renamed)).toMatchObject((await libvipsHeader(renamed))!);
    // A first APP1 that starts "Exif" without being an EXIF block: libvips takes it, and so applies no orientation.
    const decoy = Buffer.concat([turned.subarray(0, 2), Buffer.from([0xff, 0xe1, 0x00, 0x07, 0x45, 0x78, 0x69, 0x66, 0x00]), turned.subarray(2)]);
    expect(await libvipsHeader(decoy)).toMatchObject({ width: 800, height: 480 });
    expect(quickHeader(decoy)).toBeUndefined();
    const magic43 = Buffer.from(turned);
    magic43[12 + (bigEndian ? 3 : 2)] = 43;
    expect(quickHeader(magic43)).toBeUndefined();
  });

  it('reads the size and orientation libjpeg reads from files built to lead a lenient reader astray, or none', async () => {
    const small = await sharp({ create: { width: 64, height: 40, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    const exif = (await sharp(small).withMetadata({ orientation: 6 }).jpeg().toBuffer()).subarray(2);
    const app1 = exif.subarray(0, 2 + exif.readUInt16BE(2));
    const sof = small.indexOf(Buffer.from([0xff, 0xc0]));
    const fakeFrame = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x07, 0x00, 0x05, 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    const cases: Buffer[] = [
      // The frame header first, and fake ones after the image's end.
      Buffer.concat([small.subarray(0, 2), small.subarray(sof, sof + 2 + small.readUInt16BE(sof + 2)), small.subarray(2, sof), small.subarray(sof + 2 + small.readUInt16BE(sof + 2)), ...Array(50).fill(fakeFrame)]),
      // A marker without a length (RST0) after SOI.
      Buffer.concat([small.subarray(0, 2), Buffer.from([0xff, 0xd0]), small.subarray(2)]),
      // EXIF data in an APP2 segment: libvips reads APP1 only.
      Buffer.concat([small.subarray(0, 2), Buffer.from([0xff, 0xe2]), app1.subarray(2), small.subarray(2)]),
      // The only EXIF block after the frame header: libjpeg keeps it.
      Buffer.concat([small.subarray(0, sof), small.subarray(sof, sof + 2 + small.readUInt16BE(sof + 2)), app1, small.subarray(sof + 2 + small.readUInt16BE(sof + 2))]),
    ];
    const readings = await Promise.all(cases.map(async (bytes) => ({ quick: quickHeader(bytes), libvips: await libvipsHeader(bytes) })));
    for (const { quick, libvips } of readings) if (quick) expect({ format: quick.format, width: quick.width, height: quick.height, frames: quick.frames }).toEqual(libvips);
    expect(readings[1].quick).toBeUndefined();
    expect(readings[3].quick).toMatchObject({ width: 40, height: 64 });
  });

  it('gives up on a crafted walk long before its end: thousands of JPEG segments or PNG chunks go to libvips', async () => {
    const small = await sharp({ create: { width: 64, height: 40, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    const comments = Buffer.concat([small.subarray(0, 2), Buffer.alloc(4 * 100_000, Buffer.from([0xff, 0xfe, 0x00, 0x02])), small.subarray(2)]);
    expect(quickHeader(comments)).toBeUndefined();
    const png = await sharp({ create: { width: 64, height: 40, channels: 3, background: '#808080' } }).png().toBuffer();
    const chunk = Buffer.from([0, 0, 0, 0, 0x74, 0x45, 0x58, 0x74, 0, 0, 0, 0]);
    chunk.writeUInt32BE(crc32(chunk.subarray(4, 8)), 8);
    const chunks = Buffer.concat([png.subarray(0, 33), Buffer.concat(Array(10_000).fill(chunk)), png.subarray(33)]);
    expect(await libvipsHeader(chunks)).toMatchObject({ width: 64, height: 40 });
    expect(quickHeader(chunks)).toBeUndefined();
    // One large text chunk before the data (its CRC would be read whole), and a long run of JPEG fill bytes.
    const text = Buffer.alloc(12 + 300_000);
    text.writeUInt32BE(300_000, 0);
    text.write('tEXt', 4, 'latin1');
    text.writeUInt32BE(crc32(text.subarray(4, 8 + 300_000)), 8 + 300_000);
    expect(quickHeader(Buffer.concat([png.subarray(0, 33), text, png.subarray(33)]))).toBeUndefined();
    expect(quickHeader(Buffer.concat([small.subarray(0, 2), Buffer.alloc(1000, 0xff), small.subarray(2)]))).toBeUndefined();
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
