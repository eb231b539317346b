import type Redis from 'ioredis';
import { FaceMatch, FacesView, RedisKeys } from '@app/contracts';

export interface NewFace {
  faceId: string;
  box: { x: number; y: number; width: number; height: number };
  landmarks: [number, number][];
  score: number;
  embedding: Float32Array;
}

export type FaceLogEntry =
  | { op: 'add'; seq: number; faceId: string; imageHash: string; embedding: Float32Array }
  | { op: 'del'; seq: number; faceIds: string[] };

export interface ImageFacesRecord {
  faceIds: string[];
  skippedFaces: FacesView['skippedFaces'];
  computedAt: string;
}

/**
 * Inserts an image's faces atomically: each new face gets the next sequence number and its log entry in
 * the same script, so a reader that has seen sequence n has seen every face before it. Re-inserting a face
 * id that exists returns its old sequence number (a redelivered job adds nothing).
 */
const INSERT_FACES = `
local seqKey, logKey = KEYS[1], KEYS[2]
local prefix, imageHash = ARGV[1], ARGV[2]
local result = {}
local i = 3
while i <= #ARGV do
  local faceId, embedding, meta = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local faceKey = prefix .. ':face:' .. faceId
  local existing = redis.call('HGET', faceKey, 'seq')
  if existing then
    table.insert(result, tonumber(existing))
  else
    local seq = redis.call('INCR', seqKey)
    redis.call('XADD', logKey, seq .. '-1', 'op', 'add', 'faceId', faceId, 'imageHash', imageHash, 'embedding', embedding)
    redis.call('HSET', faceKey, 'imageHash', imageHash, 'seq', seq, 'meta', meta)
    table.insert(result, seq)
  end
  i = i + 3
end
return result
`;

/**
 * Removes an image's faces: from the index (log entries deleted, a tombstone appended so every worker drops
 * them), from every other face's and image's match set, and its own records. One script: all or nothing.
 */
const DELETE_IMAGE_FACES = `
local seqKey, logKey = KEYS[1], KEYS[2]
local prefix, imageHash = ARGV[1], ARGV[2]
local imageFacesKey = prefix .. ':image:' .. imageHash .. ':faces'
local imageMatchesKey = prefix .. ':image:' .. imageHash .. ':matches'
local record = redis.call('GET', imageFacesKey)
local removed, touched = 0, 0
local faceIds = {}
if record then
  faceIds = cjson.decode(record).faceIds
end
for _, faceId in ipairs(faceIds) do
  local faceKey = prefix .. ':face:' .. faceId
  local matchesKey = faceKey .. ':matches'
  for _, other in ipairs(redis.call('ZRANGE', matchesKey, 0, -1)) do
    redis.call('ZREM', prefix .. ':face:' .. other .. ':matches', faceId)
  end
  local seq = redis.call('HGET', faceKey, 'seq')
  if seq then redis.call('XDEL', logKey, seq .. '-1') end
  redis.call('DEL', faceKey, matchesKey)
  removed = removed + 1
end
for _, otherImage in ipairs(redis.call('ZRANGE', imageMatchesKey, 0, -1)) do
  redis.call('ZREM', prefix .. ':image:' .. otherImage .. ':matches', imageHash)
  touched = touched + 1
end
if #faceIds > 0 then
  local seq = redis.call('INCR', seqKey)
  redis.call('XADD', logKey, seq .. '-1', 'op', 'del', 'faceIds', table.concat(faceIds, ','))
end
redis.call('DEL', imageFacesKey, imageMatchesKey)
return {removed, touched}
`;

/** The face index and match sets in Redis: the one seam both apps use for faces. */
export class FaceStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async insertFaces(imageHash: string, faces: NewFace[]): Promise<number[]> {
    if (faces.length === 0) return [];
    const args: string[] = [this.keys.prefix, imageHash];
    for (const face of faces) {
      args.push(face.faceId, Buffer.from(face.embedding.buffer, face.embedding.byteOffset, face.embedding.byteLength).toString('base64'));
      args.push(JSON.stringify({ box: face.box, landmarks: face.landmarks, score: face.score }));
    }
    const seqs = (await this.redis.eval(INSERT_FACES, 2, this.keys.faceSeq(), this.keys.faceLog(), ...args)) as number[];
    return seqs.map(Number);
  }

  /** Log entries after `afterSeq`, oldest first, at most `count`. */
  async readLog(afterSeq: number, count = 5000): Promise<FaceLogEntry[]> {
    const entries = (await this.redis.xrange(this.keys.faceLog(), `(${afterSeq}-1`, '+', 'COUNT', count)) as [string, string[]][];
    return entries.map(([id, flat]) => {
      const fields: Record<string, string> = {};
      for (let i = 0; i < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
      const seq = Number(id.split('-')[0]);
      if (fields.op === 'del') return { op: 'del', seq, faceIds: fields.faceIds.split(',') };
      const raw = Buffer.from(fields.embedding, 'base64');
      const embedding = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      return { op: 'add', seq, faceId: fields.faceId, imageHash: fields.imageHash, embedding };
    });
  }

  /** Records matches on both sides at once: face↔face and image↔image (best similarity kept). */
  async recordMatches(imageHash: string, pairs: { faceId: string; match: FaceMatch }[]): Promise<void> {
    if (pairs.length === 0) return;
    const multi = this.redis.multi();
    for (const { faceId, match } of pairs) {
      multi.zadd(this.keys.faceMatches(faceId), match.similarity, match.faceId);
      multi.zadd(this.keys.faceMatches(match.faceId), match.similarity, faceId);
      multi.zadd(this.keys.imageMatches(imageHash), 'GT', match.similarity, match.imageHash);
      multi.zadd(this.keys.imageMatches(match.imageHash), 'GT', match.similarity, imageHash);
    }
    await multi.exec();
  }

  async saveImageFaces(imageHash: string, record: ImageFacesRecord): Promise<void> {
    await this.redis.set(this.keys.imageFaces(imageHash), JSON.stringify(record));
  }

  async hasImageFaces(imageHash: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.imageFaces(imageHash))) === 1;
  }

  /**
   * The image's faces with their best `limit` matches each (strongest first) and the total counts, or
   * undefined when it has not been processed. The stored match sets stay complete; only the answer is capped.
   */
  async view(imageHash: string, limit: number): Promise<FacesView | undefined> {
    const raw = await this.redis.get(this.keys.imageFaces(imageHash));
    if (!raw) return undefined;
    const record = JSON.parse(raw) as ImageFacesRecord;
    const faces = await Promise.all(
      record.faceIds.map(async (faceId) => {
        const [meta, matches, matchCount] = await Promise.all([
          this.redis.hget(this.keys.face(faceId), 'meta'),
          this.redis.zrevrange(this.keys.faceMatches(faceId), 0, limit - 1, 'WITHSCORES'),
          this.redis.zcard(this.keys.faceMatches(faceId)),
        ]);
        const parsed = meta ? JSON.parse(meta) : { box: null, landmarks: [], score: 0 };
        // One round trip for every matched face's image, not one each.
        const lookup = this.redis.pipeline();
        for (let i = 0; i < matches.length; i += 2) lookup.hget(this.keys.face(matches[i]), 'imageHash');
        const images = ((await lookup.exec()) ?? []).map(([, value]) => value as string | null);
        const list: FaceMatch[] = [];
        for (let i = 0; i < matches.length; i += 2) {
          const otherImage = images[i / 2];
          if (otherImage) list.push({ imageHash: otherImage, faceId: matches[i], similarity: round(Number(matches[i + 1])) });
        }
        return { faceId, box: parsed.box, landmarks: parsed.landmarks, score: parsed.score, matches: list, matchCount };
      }),
    );
    const [matchedImages, matchedImageCount] = await Promise.all([
      this.redis.zrevrange(this.keys.imageMatches(imageHash), 0, limit - 1),
      this.redis.zcard(this.keys.imageMatches(imageHash)),
    ]);
    return { imageHash, faces, skippedFaces: record.skippedFaces, matchedImages, matchedImageCount, ...(matchedImageCount === 0 ? { message: 'no matches found' } : {}) };
  }

  async deleteImageFaces(imageHash: string): Promise<{ removedFaces: number; updatedImages: number }> {
    const [removedFaces, updatedImages] = (await this.redis.eval(DELETE_IMAGE_FACES, 2, this.keys.faceSeq(), this.keys.faceLog(), this.keys.prefix, imageHash)) as number[];
    return { removedFaces, updatedImages };
  }
}

function round(value: number): number {
  return Math.round(value * 10000) / 10000;
}
