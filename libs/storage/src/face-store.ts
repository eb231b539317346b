import type Redis from 'ioredis';
import { FaceMatch, faceIdStem, FacesView, RedisKeys, TenantId, TenantKeys } from '@app/contracts';

export interface NewFace {
  faceId: string;
  box: { x: number; y: number; width: number; height: number };
  landmarks: [number, number][];
  score: number;
  embedding: Float32Array;
}

export type FaceLogEntry =
  | { op: 'add'; seq: number; faceId: string; imageHash: string; embedding: Float32Array }
  /** A tombstone: the faces added with these sequence numbers are gone. */
  | { op: 'del'; seq: number; removedSeqs: number[] };

export interface ImageFacesRecord {
  faceIds: string[];
  skippedFaces: FacesView['skippedFaces'];
  computedAt: string;
}

/**
 * Inserts an image's faces atomically: each new face gets the next sequence number and its log entry in
 * the same script, so a reader that has seen sequence n has seen every face before it. Re-inserting a face
 * id that exists returns its old sequence number (a redelivered job adds nothing). Inserts nothing and returns
 * false when the tenant no longer has the image (erased while the job ran).
 */
const INSERT_FACES = `
local seqKey, logKey, imageKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, imageHash = ARGV[1], ARGV[2]
if redis.call('EXISTS', imageKey) == 0 then return false end
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
 * Records an image's matches on both sides (face↔face, image↔image with the best similarity kept) and its face
 * record, all or nothing. Skipped as a whole when the image or one of its faces is gone (erased or forgotten
 * while the job ran); a match whose other face is gone meanwhile is left out. So nothing of an erased image
 * is ever written back.
 * ARGV: prefix, imageHash, record JSON, face count n, n face ids, then (faceId, otherFaceId, otherImage, similarity)*.
 */
const FINISH_IMAGE_FACES = `
local imageKey, imageFacesKey, imageMatchesKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, imageHash, record, faceCount = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', imageKey) == 0 then return 0 end
for i = 1, faceCount do
  if redis.call('EXISTS', prefix .. ':face:' .. ARGV[4 + i]) == 0 then return 0 end
end
local i = 5 + faceCount
while i <= #ARGV do
  local faceId, other, otherImage, similarity = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('EXISTS', prefix .. ':face:' .. other) == 1 then
    redis.call('ZADD', prefix .. ':face:' .. faceId .. ':matches', similarity, other)
    redis.call('ZADD', prefix .. ':face:' .. other .. ':matches', similarity, faceId)
    redis.call('ZADD', imageMatchesKey, 'GT', similarity, otherImage)
    redis.call('ZADD', prefix .. ':image:' .. otherImage .. ':matches', 'GT', similarity, imageHash)
  end
  i = i + 4
end
redis.call('SET', imageFacesKey, record)
return 1
`;

/**
 * Lua: removes every face of an image — found by probing the deterministic ids <stem>-0, <stem>-1, … , so
 * faces inserted by a job that has not written the image's record yet are found too — from the index (log
 * entries deleted, one tombstone appended so every worker drops them), from every other face's and image's
 * match set, and its own face and match records. The tombstone names the removed faces by their sequence
 * numbers only, so nothing left in the log identifies the image. Returns {faces removed, other images updated,
 * 1 if the image had a face record, the tombstone's sequence number or 0 when no face was removed}.
 */
export const FORGET_FACES_LUA = `
local function forget_faces(seqKey, logKey, prefix, imageHash, stem)
  local imageFacesKey = prefix .. ':image:' .. imageHash .. ':faces'
  local imageMatchesKey = prefix .. ':image:' .. imageHash .. ':matches'
  local faceIds = {}
  local n = 0
  while redis.call('EXISTS', prefix .. ':face:' .. stem .. '-' .. n) == 1 do
    table.insert(faceIds, stem .. '-' .. n)
    n = n + 1
  end
  local touched = 0
  local seqs = {}
  for _, faceId in ipairs(faceIds) do
    local faceKey = prefix .. ':face:' .. faceId
    local matchesKey = faceKey .. ':matches'
    for _, other in ipairs(redis.call('ZRANGE', matchesKey, 0, -1)) do
      redis.call('ZREM', prefix .. ':face:' .. other .. ':matches', faceId)
    end
    local seq = redis.call('HGET', faceKey, 'seq')
    if seq then
      redis.call('XDEL', logKey, seq .. '-1')
      table.insert(seqs, seq)
    end
    redis.call('DEL', faceKey, matchesKey)
  end
  for _, otherImage in ipairs(redis.call('ZRANGE', imageMatchesKey, 0, -1)) do
    redis.call('ZREM', prefix .. ':image:' .. otherImage .. ':matches', imageHash)
    touched = touched + 1
  end
  local tombstone = 0
  if #seqs > 0 then
    tombstone = redis.call('INCR', seqKey)
    redis.call('XADD', logKey, tombstone .. '-1', 'op', 'del', 'seqs', table.concat(seqs, ','))
  end
  local had = redis.call('DEL', imageFacesKey, imageMatchesKey)
  return {#faceIds, touched, had, tombstone}
end
`;

const DELETE_IMAGE_FACES = `${FORGET_FACES_LUA}
local removed = forget_faces(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return {removed[1], removed[2], removed[4]}
`;

/** The face index and match sets in Redis, one tenant at a time: the one seam both apps use for faces. */
export class FaceStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  /** Inserts the faces; their sequence numbers, or undefined when the tenant's image is gone (erased). */
  async insertFaces(tenant: TenantId, imageHash: string, faces: NewFace[]): Promise<number[] | undefined> {
    const k = this.keys.tenant(tenant);
    const args: string[] = [k.prefix, imageHash];
    for (const face of faces) {
      args.push(face.faceId, Buffer.from(face.embedding.buffer, face.embedding.byteOffset, face.embedding.byteLength).toString('base64'));
      args.push(JSON.stringify({ box: face.box, landmarks: face.landmarks, score: face.score }));
    }
    const seqs = (await this.redis.eval(INSERT_FACES, 3, k.faceSeq(), k.faceLog(), k.image(imageHash), ...args)) as number[] | null;
    return seqs ? seqs.map(Number) : undefined;
  }

  /** The tenant's log entries after `afterSeq`, oldest first, at most `count`. */
  async readLog(tenant: TenantId, afterSeq: number, count = 5000): Promise<FaceLogEntry[]> {
    const entries = (await this.redis.xrange(this.keys.tenant(tenant).faceLog(), `(${afterSeq}-1`, '+', 'COUNT', count)) as [string, string[]][];
    return entries.map(parseLogEntry);
  }

  /**
   * The `add` entries of these faces, by sequence number, in one round trip (one XRANGE each, pipelined). A face
   * removed meanwhile has no entry any more and is simply absent from the answer.
   */
  async readFaces(tenant: TenantId, seqs: number[]): Promise<Map<number, Extract<FaceLogEntry, { op: 'add' }>>> {
    const found = new Map<number, Extract<FaceLogEntry, { op: 'add' }>>();
    if (seqs.length === 0) return found;
    const log = this.keys.tenant(tenant).faceLog();
    const pipeline = this.redis.pipeline();
    for (const seq of seqs) pipeline.xrange(log, `${seq}-1`, `${seq}-1`);
    for (const [error, entries] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      for (const raw of entries as [string, string[]][]) {
        const entry = parseLogEntry(raw);
        if (entry.op === 'add') found.set(entry.seq, entry);
      }
    }
    return found;
  }

  /** The tenant's last sequence number (0 when it never stored a face). */
  async headSeq(tenant: TenantId): Promise<number> {
    return Number((await this.redis.get(this.keys.tenant(tenant).faceSeq())) ?? 0);
  }

  /**
   * Records the image's matches on both sides and its face record in one script (FINISH_IMAGE_FACES).
   * Returns false when nothing was written because the image or its faces were erased meanwhile.
   */
  async finishImage(tenant: TenantId, imageHash: string, record: ImageFacesRecord, pairs: { faceId: string; match: FaceMatch }[]): Promise<boolean> {
    const k = this.keys.tenant(tenant);
    const args: (string | number)[] = [k.prefix, imageHash, JSON.stringify(record), record.faceIds.length, ...record.faceIds];
    for (const { faceId, match } of pairs) args.push(faceId, match.faceId, match.imageHash, match.similarity);
    const written = await this.redis.eval(FINISH_IMAGE_FACES, 3, k.image(imageHash), k.imageFaces(imageHash), k.imageMatches(imageHash), ...args);
    return written === 1;
  }

  async hasImageFaces(tenant: TenantId, imageHash: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.tenant(tenant).imageFaces(imageHash))) === 1;
  }

  /**
   * The image's faces with their best `limit` matches each (strongest first) and the total counts, or
   * undefined when it has not been processed. The stored match sets stay complete; only the answer is capped.
   */
  async view(tenant: TenantId, imageHash: string, limit: number): Promise<FacesView | undefined> {
    const k = this.keys.tenant(tenant);
    const raw = await this.redis.get(k.imageFaces(imageHash));
    if (!raw) return undefined;
    const record = JSON.parse(raw) as ImageFacesRecord;
    const faces = await Promise.all(record.faceIds.map((faceId) => this.faceView(k, faceId, limit)));
    const [matchedImages, matchedImageCount] = await Promise.all([
      this.redis.zrevrange(k.imageMatches(imageHash), 0, limit - 1),
      this.redis.zcard(k.imageMatches(imageHash)),
    ]);
    return { imageHash, faces, skippedFaces: record.skippedFaces, matchedImages, matchedImageCount, ...(matchedImageCount === 0 ? { message: 'no matches found' } : {}) };
  }

  private async faceView(k: TenantKeys, faceId: string, limit: number): Promise<FacesView['faces'][number]> {
    const [meta, matches, matchCount] = await Promise.all([
      this.redis.hget(k.face(faceId), 'meta'),
      this.redis.zrevrange(k.faceMatches(faceId), 0, limit - 1, 'WITHSCORES'),
      this.redis.zcard(k.faceMatches(faceId)),
    ]);
    const parsed = meta ? JSON.parse(meta) : { box: null, landmarks: [], score: 0 };
    // One round trip for every matched face's image, not one each.
    const lookup = this.redis.pipeline();
    for (let i = 0; i < matches.length; i += 2) lookup.hget(k.face(matches[i]), 'imageHash');
    const images = ((await lookup.exec()) ?? []).map(([, value]) => value as string | null);
    const list: FaceMatch[] = [];
    for (let i = 0; i < matches.length; i += 2) {
      const otherImage = images[i / 2];
      if (otherImage) list.push({ imageHash: otherImage, faceId: matches[i], similarity: round(Number(matches[i + 1])) });
    }
    return { faceId, box: parsed.box, landmarks: parsed.landmarks, score: parsed.score, matches: list, matchCount };
  }

  /**
   * Forgets the image's faces (DELETE_IMAGE_FACES). `tombstoneSeq` is the sequence number of the tombstone
   * appended (0 when there was no face): snapshots applied before it must go (FaceSnapshots.purgeBefore).
   */
  async deleteImageFaces(tenant: TenantId, imageHash: string): Promise<{ removedFaces: number; updatedImages: number; tombstoneSeq: number }> {
    const k = this.keys.tenant(tenant);
    const [removedFaces, updatedImages, tombstoneSeq] = (await this.redis.eval(DELETE_IMAGE_FACES, 2, k.faceSeq(), k.faceLog(), k.prefix, imageHash, faceIdStem(tenant, imageHash))) as number[];
    return { removedFaces, updatedImages, tombstoneSeq };
  }

  /** Notes that a tenant stores faces, so that starting workers load its index. */
  async registerTenant(tenant: TenantId): Promise<void> {
    await this.redis.sadd(this.keys.faceTenants(), tenant);
  }

  /** Every tenant that has stored faces (a small set: tenants are configured). */
  async tenants(): Promise<TenantId[]> {
    return (await this.redis.smembers(this.keys.faceTenants())) as TenantId[];
  }
}

function parseLogEntry([id, flat]: [string, string[]]): FaceLogEntry {
  const fields: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
  const seq = Number(id.split('-')[0]);
  if (fields.op === 'del') return { op: 'del', seq, removedSeqs: fields.seqs.split(',').map(Number) };
  const raw = Buffer.from(fields.embedding, 'base64');
  const embedding = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  return { op: 'add', seq, faceId: fields.faceId, imageHash: fields.imageHash, embedding };
}

function round(value: number): number {
  return Math.round(value * 10000) / 10000;
}
