import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import sharp, { Sharp } from 'sharp';
import { Box, InferenceRuntime, ModelCatalog, ModelExecutor } from '@app/models';
import { cosine, FacePipeline } from '../apps/worker/src/faces/face-pipeline';
import { REPO_ROOT } from '../test/support/app-process';
import { percentile, round } from './stats';

/**
 * npm run bench -- faces-quality: the face pipeline on photos as people take them. Each shared face photo is
 * run as it is (the reference), then pasted unscaled into larger canvases (2×, 4×, 6× each side), into wide and
 * tall panoramas (2:1 to 4:1 its own width or height), stored with each EXIF orientation, as JPEG without its
 * end-of-image marker, and as HEIC (the handed copy). For every variant it counts the faces found against the
 * faces expected, the box error against the reference box moved by the paste offset (target ±10 %), and the
 * cosine similarity of each face's embedding with the same face in the reference (target ≥ 0.80). Across photos
 * it reports same-person and impostor similarities (the FACE_MATCH_THRESHOLD margins), and the face job's p50
 * time on a 12-megapixel photo (a group shot on a 4032×3024 canvas).
 */
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

/** Who is in each photo, left to right as the reference finds them; `?` = a person with no other photo here. */
const PHOTOS: { file: string; people: string[] }[] = [
  { file: 'face_obama_1.jpg', people: ['obama'] },
  { file: 'face_obama_2.jpg', people: ['obama'] },
  { file: 'face_biden_1.jpg', people: ['biden'] },
  { file: 'face_biden_2.jpg', people: ['biden'] },
  { file: 'faces_obama_biden.jpg', people: ['obama', 'biden'] },
  { file: 'faces_group_bbt.jpg', people: ['?', '?', '?', '?', '?', '?'] },
  { file: 'face_crop_sheldon_1.png', people: ['sheldon'] },
  { file: 'face_crop_sheldon_2.png', people: ['sheldon'] },
  { file: 'face_crop_howard_1.png', people: ['howard'] },
];
const HEIC_COPIES: Record<string, string> = { 'face_obama_1.jpg': 'outside/face_obama_1.heic' };
const CANVAS_SCALES = [2, 4, 6];
const PANORAMA_RATIOS = [2, 3, 4];
const TARGET = { boxError: 0.1, similarity: 0.8 };
/** MAX_IMAGE_PIXELS' default: larger canvases (6× of the bigger photos) are refused by the service, so not measured. */
const MAX_PIXELS = 50_000_000;

interface Face {
  box: Box;
  score: number;
  embedding: Float32Array;
}

interface Variant {
  kind: string;
  bytes: Buffer;
  /** Where the photo's pixel (0, 0) sits in the variant's display image. */
  offset: [number, number];
}

let background: Buffer | undefined;

/** The photo pasted unscaled in the middle of a width×height canvas of castle (a photo with no faces), as JPEG. */
async function pasted(photo: Buffer, width: number, height: number): Promise<Variant & { size: [number, number] }> {
  background ??= readFileSync(join(FIXTURES, 'castle_image.jpg'));
  const meta = await sharp(photo).rotate().metadata();
  const [w, h] = [meta.autoOrient.width, meta.autoOrient.height];
  const left = Math.round((width - w) / 2);
  const top = Math.round((height - h) / 2);
  const flat = await sharp(photo).rotate().toColourspace('srgb').png().toBuffer();
  const bytes = await sharp(background)
    .resize(width, height, { fit: 'cover' })
    .composite([{ input: flat, left, top }])
    .jpeg({ quality: 92 })
    .toBuffer();
  return { kind: '', bytes, offset: [left, top], size: [width, height] };
}

/** The same display image stored with EXIF orientation `orientation`: pixels turned the other way, tag set. */
async function withOrientation(photo: Buffer, orientation: number): Promise<Buffer> {
  // Inverse of what each orientation tells a viewer to do (EXIF 2.32, tag 0x0112).
  const undo: Record<number, (image: Sharp) => Sharp> = {
    2: (image) => image.flop(),
    3: (image) => image.rotate(180),
    4: (image) => image.flip(),
    5: (image) => image.rotate(270).flop(),
    6: (image) => image.rotate(270),
    7: (image) => image.rotate(90).flop(),
    8: (image) => image.rotate(90),
  };
  const upright = await sharp(photo).rotate().toColourspace('srgb').png().toBuffer();
  const stored = await undo[orientation](sharp(upright)).png().toBuffer();
  return sharp(stored).jpeg({ quality: 95 }).withMetadata({ orientation }).toBuffer();
}

async function variantsOf(file: string, photo: Buffer): Promise<Variant[]> {
  const meta = await sharp(photo).rotate().metadata();
  const [w, h] = [meta.autoOrient.width, meta.autoOrient.height];
  const variants: Variant[] = [];
  for (const k of CANVAS_SCALES) variants.push({ ...(await pasted(photo, w * k, h * k)), kind: `canvas ${k}x` });
  for (const r of PANORAMA_RATIOS) {
    variants.push({ ...(await pasted(photo, w * r, h)), kind: `panorama ${r}:1` });
    variants.push({ ...(await pasted(photo, w, h * r)), kind: `panorama 1:${r}` });
  }
  for (let orientation = 2; orientation <= 8; orientation++) variants.push({ kind: `exif ${orientation}`, bytes: await withOrientation(photo, orientation), offset: [0, 0] });
  if (file.endsWith('.jpg')) variants.push({ kind: 'jpeg without EOI', bytes: photo.subarray(0, photo.length - 2), offset: [0, 0] });
  if (HEIC_COPIES[file]) variants.push({ kind: 'heic', bytes: readFileSync(join(FIXTURES, HEIC_COPIES[file])), offset: [0, 0] });
  return variants;
}

function iou(a: Box, b: Box): number {
  const x = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const y = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  return (x * y) / (a.width * a.height + b.width * b.height - x * y);
}

/** Largest side error of `found` against `expected`, as a fraction of the expected box's size on that axis. */
function boxError(found: Box, expected: Box): number {
  return Math.max(
    Math.abs(found.x - expected.x) / expected.width,
    Math.abs(found.x + found.width - expected.x - expected.width) / expected.width,
    Math.abs(found.y - expected.y) / expected.height,
    Math.abs(found.y + found.height - expected.y - expected.height) / expected.height,
  );
}

const leftToRight = (faces: Face[]) => [...faces].sort((a, b) => a.box.x - b.box.x);
const summary = (values: number[]) => (values.length ? { min: round(Math.min(...values), 3), median: round(percentile(values, 50), 3) } : { min: NaN, median: NaN });

export async function benchFacesQuality(): Promise<Record<string, unknown>> {
  const catalog = ModelCatalog.load(join(REPO_ROOT, 'models'));
  const runtime = await InferenceRuntime.start(catalog, { threads: 1, intraOpThreads: Math.max(1, cpus().length) });
  const pipeline = new FacePipeline(catalog, new ModelExecutor(catalog, runtime), { detector: 'yunet', embedder: 'mobilefacenet', minFaceSize: 1, limits: { maxPixels: MAX_PIXELS, heic: true } });
  const detect = async (bytes: Buffer): Promise<Face[]> => (await pipeline.run(bytes)).faces;
  try {
    const byKind = new Map<string, { expected: number; found: number; extra: number; boxErrors: number[]; similarities: number[] }>();
    const identified: { person: string; embedding: Float32Array; photo: string }[] = [];
    const misses: string[] = [];
    const skipped: string[] = [];
    const outliers: string[] = [];
    const extras: string[] = [];
    for (const { file, people } of PHOTOS) {
      const photo = readFileSync(join(FIXTURES, file));
      const reference = leftToRight(await detect(photo));
      const tally = (kind: string) => byKind.get(kind) ?? byKind.set(kind, { expected: 0, found: 0, extra: 0, boxErrors: [], similarities: [] }).get(kind)!;
      const original = tally('original');
      original.expected += people.length;
      original.found += Math.min(people.length, reference.length);
      if (reference.length !== people.length) misses.push(`${file}: ${reference.length} faces, expected ${people.length}`);
      reference.forEach((face, i) => people[i] && people[i] !== '?' && identified.push({ person: people[i], embedding: face.embedding, photo: file }));
      for (const variant of await variantsOf(file, photo)) {
        const kind = variant.kind.replace(/ \d+$/, ' *');
        const row = tally(kind);
        const { width = 0, height = 0 } = await sharp(variant.bytes).metadata();
        if (width * height > MAX_PIXELS) {
          skipped.push(`${file} ${variant.kind}: ${width}×${height} is over the ${MAX_PIXELS}-pixel limit`);
          continue;
        }
        let found: Face[];
        try {
          found = await detect(variant.bytes);
        } catch (error) {
          row.expected += reference.length;
          misses.push(`${file} ${variant.kind}: refused (${(error as { code?: string }).code ?? (error as Error).message})`);
          continue;
        }
        const unexpected = found.filter((face) => !reference.some((ref) => iou(face.box, { ...ref.box, x: ref.box.x + variant.offset[0], y: ref.box.y + variant.offset[1] }) >= 0.3));
        row.extra += unexpected.length;
        unexpected.forEach((face) => extras.push(`${file} ${variant.kind}: a face where the photo has none, score ${face.score} at ${Math.round(face.box.x)},${Math.round(face.box.y)} ${Math.round(face.box.width)}×${Math.round(face.box.height)}`));
        for (const ref of reference) {
          row.expected++;
          const expected = { ...ref.box, x: ref.box.x + variant.offset[0], y: ref.box.y + variant.offset[1] };
          const best = found.map((face) => ({ face, overlap: iou(face.box, expected) })).sort((a, b) => b.overlap - a.overlap)[0];
          if (!best || best.overlap < 0.3) {
            misses.push(`${file} ${variant.kind}: face at ${Math.round(expected.x)},${Math.round(expected.y)} not found`);
            continue;
          }
          row.found++;
          row.boxErrors.push(boxError(best.face.box, expected));
          const [error, similarity] = [boxError(best.face.box, expected), cosine(best.face.embedding, ref.embedding)];
          if (error > TARGET.boxError || similarity < TARGET.similarity) outliers.push(`${file} ${variant.kind}: box error ${round(error, 3)}, similarity ${round(similarity, 3)}`);
          row.similarities.push(cosine(best.face.embedding, ref.embedding));
        }
      }
      console.error(`faces-quality: ${file} done`);
    }
    const same: number[] = [];
    const impostor: number[] = [];
    identified.forEach((a, i) => identified.slice(i + 1).forEach((b) => (a.person === b.person ? same : impostor).push(cosine(a.embedding, b.embedding))));

    const kinds = Object.fromEntries(
      [...byKind].map(([kind, row]) => [
        kind,
        kind === 'original' ? { found: `${row.found}/${row.expected}` } : {
          found: `${row.found}/${row.expected}`,
          facesWhereNone: row.extra,
          boxErrorMax: round(Math.max(0, ...row.boxErrors), 3),
          withinBoxTarget: `${row.boxErrors.filter((e) => e <= TARGET.boxError).length}/${row.expected}`,
          similarityToOriginal: summary(row.similarities),
          atLeastSimilarityTarget: `${row.similarities.filter((s) => s >= TARGET.similarity).length}/${row.expected}`,
        },
      ]),
    );
    const all = [...byKind.values()];
    return {
      targets: { boxError: `≤ ${TARGET.boxError}`, similarityToOriginal: `≥ ${TARGET.similarity}` },
      facesFound: `${all.reduce((n, r) => n + r.found, 0)}/${all.reduce((n, r) => n + r.expected, 0)}`,
      facesWhereNone: all.reduce((n, r) => n + r.extra, 0),
      byKind: kinds,
      samePersonAcrossPhotos: { pairs: same.length, ...summary(same) },
      impostorMax: round(Math.max(...impostor), 3),
      twelveMegapixelFaceJob: await timeTwelveMegapixels(detect),
      misses,
      outliers,
      extras,
      skipped,
    };
  } finally {
    await runtime.close();
  }
}

/** p50 of the whole face job (decode, detect, align, embed) on a 4032×3024 group shot, after one warm-up. */
async function timeTwelveMegapixels(detect: (bytes: Buffer) => Promise<Face[]>) {
  const { bytes } = await pasted(readFileSync(join(FIXTURES, 'faces_group_bbt.jpg')), 4032, 3024);
  let faces = (await detect(bytes)).length;
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const started = performance.now();
    faces = (await detect(bytes)).length;
    times.push(performance.now() - started);
  }
  return { size: '4032x3024', faces, p50Ms: round(percentile(times, 50)), runs: times.length };
}
