import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { fixture, FIXTURES } from './fixtures';

/**
 * Hostile image files, generated here and kept in test/fixtures/hostile/ (each is small). The suite
 * regenerates any that are missing, so the folder can be deleted and rebuilt.
 */
export interface HostileFile {
  name: string;
  /** What it attacks, for the report. */
  attack: string;
  bytes: Buffer;
}

export const HOSTILE_DIR = join(FIXTURES, 'hostile');

export function hostileFiles(): HostileFile[] {
  const build: [string, string, () => Buffer][] = [
    ['empty.jpg', 'zero bytes', () => Buffer.alloc(0)],
    ['one-byte.jpg', 'a single byte', () => Buffer.from([0xff])],
    ['truncated.jpg', 'a JPEG cut off after 20 kB', () => fixture('castle_image.jpg').subarray(0, 20_000)],
    ['bad-crc.png', 'a PNG whose image-data CRC is wrong', () => corruptFirstIdatCrc(smallPng())],
    ['text.jpg', 'plain text named .jpg', () => Buffer.from('GET /etc/passwd HTTP/1.0\r\nthis is text, not a JPEG\r\n')],
    ['header-40000x40000.png', 'a valid PNG header declaring 1.6 gigapixels', () => png(40_000, 40_000, 8, 2, Buffer.alloc(16))],
    ['bomb-30000x30000.png', 'a real decompression bomb: 30000×30000 pixels of zeros (2.7 GB as RGB) deflated to ~110 kB', () => pngBomb(30_000)],
    ['xxe.svg', 'an SVG with an external entity reading /etc/passwd', () => Buffer.from('<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&xxe;</text></svg>\n')],
    ['plain.svg', 'an ordinary SVG (vector, not a raster image)', () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/></svg>\n')],
    ['tall-1x50000000.png', 'a PNG of 1×50,000,000 pixels (inside the pixel limit, a shape no model input can be scaled from)', () => tallPng(50_000_000)],
    ['animated-3000-frames.gif', 'an animated GIF with 3000 frames', () => animatedGif(3000)],
    ['deep-10000.json', 'JSON nested 10,000 deep', () => Buffer.from(`{"image":${'['.repeat(10_000)}${']'.repeat(10_000)}}`)],
    ['garbage-base64.json', 'base64 with garbage inside', () => Buffer.from(`{"image":"${fixture('cat_kitten_224.png').subarray(0, 300).toString('base64')}<script>%00\\u0000"}`)],
  ];
  mkdirSync(HOSTILE_DIR, { recursive: true });
  return build.map(([name, attack, make]) => {
    const path = join(HOSTILE_DIR, name);
    if (!existsSync(path)) writeFileSync(path, make());
    return { name, attack, bytes: readFileSync(path) };
  });
}

function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([length, body, crc]);
}

/** A PNG from its parts: IHDR (bit depth, colour type) and already-deflated IDAT data. */
function png(width: number, height: number, bitDepth: number, colourType: number, idat: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([bitDepth, colourType, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

/** 1-bit greyscale, every row zero: the whole image deflates at ~1000:1. */
function pngBomb(side: number): Buffer {
  const row = Buffer.alloc(1 + Math.ceil(side / 8));
  const rows = Buffer.alloc(row.length * side);
  return png(side, side, 1, 0, deflateSync(rows, { level: 9 }));
}

/** A valid 1-pixel-wide greyscale PNG `height` rows tall (each row: filter byte 0 and one grey pixel). */
function tallPng(height: number): Buffer {
  const rows = Buffer.alloc(2 * height);
  for (let y = 0; y < height; y++) rows[2 * y + 1] = 0x80;
  return png(1, height, 8, 0, deflateSync(rows, { level: 9 }));
}

/** A 64×64 RGB gradient PNG, valid. */
function smallPng(): Buffer {
  const side = 64;
  const raw = Buffer.alloc((1 + side * 3) * side);
  for (let y = 0; y < side; y++) for (let x = 0; x < side * 3; x++) raw[y * (1 + side * 3) + 1 + x] = (x * 4 + y * 3) & 0xff;
  return png(side, side, 8, 2, deflateSync(raw));
}

function corruptFirstIdatCrc(file: Buffer): Buffer {
  const copy = Buffer.from(file);
  const at = copy.indexOf('IDAT', 8, 'latin1');
  const length = copy.readUInt32BE(at - 4);
  const crcAt = at + 4 + length;
  copy.writeUInt32BE((copy.readUInt32BE(crcAt) ^ 0xdeadbeef) >>> 0, crcAt);
  return copy;
}

/** An animated GIF of `frames` 1×1 frames on a 64×64 screen (each frame is the classic 1-pixel LZW stream). */
function animatedGif(frames: number): Buffer {
  const screen = Buffer.from([0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 64, 0, 64, 0, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
  const loop = Buffer.from([0x21, 0xff, 0x0b, ...Buffer.from('NETSCAPE2.0', 'latin1'), 0x03, 0x01, 0x00, 0x00, 0x00]);
  const frame = Buffer.from([0x21, 0xf9, 0x04, 0x04, 0x02, 0x00, 0x00, 0x00, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00]);
  return Buffer.concat([screen, loop, ...Array.from({ length: frames }, () => frame), Buffer.from([0x3b])]);
}
