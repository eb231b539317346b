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

/** What one read of the log answers (FaceStore.readLog). */
export interface FaceLogRead {
  /** The entries after the cursor, oldest first. */
  entries: FaceLogEntry[];
  /** The tenant's counter, read after the entries: no entry read is above it unless Redis lost writes. */
  head: number;
  /**
   * The entry numbered `check` as it is now (null: none, e.g. erased), when asked for: the worker compares
   * it with the one it applied under that number, which differs when the number was given out again.
   */
  checked?: FaceLogEntry | null;
}

export interface ImageFacesRecord {
  faceIds: string[];
  skippedFaces: FacesView['skippedFaces'];
  computedAt: string;
}

/**
 * Every script here touches only keys passed in KEYS (Redis Cluster routes a script by its declared keys, and a
 * key it builds itself may sit in a slot being migrated away). The scripts still name keys the readable way,
 * `prefix .. ':face:' .. id`, but only through `key(name)`, which refuses a name not declared: the client computes
 * the same names with TenantKeys and passes them all. Every one carries the tenant's hash tag, so they share a slot.
 */
export const DECLARED_KEYS_LUA = `
local declared = {}
for _, name in ipairs(KEYS) do declared[name] = true end
local function key(name)
  if not declared[name] then error('script touched an undeclared key: ' .. name) end
  return name
end
`;

/**
 * Inserts an image's faces atomically: each new face gets the next sequence number and its log entry in
 * the same script, so a reader that has seen sequence n has seen every face before it. Re-inserting a face
 * id that exists returns its old sequence number (a redelivered job adds nothing). Inserts nothing and returns
 * false when the tenant no longer has the image (erased while the job ran). Otherwise the sequence numbers,
 * then the counter as the script leaves it (the log's head: a worker that has applied more than that has
 * seen writes Redis since lost).
 */
const INSERT_FACES = `${DECLARED_KEYS_LUA}
local seqKey, logKey, imageKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, imageHash = ARGV[1], ARGV[2]
if redis.call('EXISTS', imageKey) == 0 then return false end
local result = {}
local i = 3
while i <= #ARGV do
  local faceId, embedding, meta = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local faceKey = key(prefix .. ':face:' .. faceId)
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
table.insert(result, tonumber(redis.call('GET', seqKey) or '0'))
return result
`;

/**
 * Records an image's matches on both sides (face↔face, image↔image with the best similarity kept) and its face
 * record, all or nothing. Skipped as a whole when the image or one of its faces is gone (erased or forgotten
 * while the job ran); a match whose other face is gone meanwhile is left out. So nothing of an erased image
 * is ever written back.
 * KEYS: image, its faces record, its match set, then every face, face match set and image match set named below.
 * ARGV: prefix, imageHash, record JSON, face count n, n face ids, then (faceId, otherFaceId, otherImage, similarity)*.
 */
const FINISH_IMAGE_FACES = `${DECLARED_KEYS_LUA}
local imageKey, imageFacesKey, imageMatchesKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, imageHash, record, faceCount = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', imageKey) == 0 then return 0 end
for i = 1, faceCount do
  if redis.call('EXISTS', key(prefix .. ':face:' .. ARGV[4 + i])) == 0 then return 0 end
end
local i = 5 + faceCount
while i <= #ARGV do
  local faceId, other, otherImage, similarity = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('EXISTS', key(prefix .. ':face:' .. other)) == 1 then
    redis.call('ZADD', key(prefix .. ':face:' .. faceId .. ':matches'), similarity, other)
    redis.call('ZADD', key(prefix .. ':face:' .. other .. ':matches'), similarity, faceId)
    redis.call('ZADD', imageMatchesKey, 'GT', similarity, otherImage)
    redis.call('ZADD', key(prefix .. ':image:' .. otherImage .. ':matches'), 'GT', similarity, imageHash)
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
 *
 * Which keys it touches depends on what it finds (the faces, the faces and images they matched), so it first
 * looks, reading only, and returns nil plus the names it would touch that were not declared when there are any;
 * the caller (runDeclared) declares them and runs it again. It writes only in a run where every key it
 * touches was declared. Needs DECLARED_KEYS_LUA.
 *
 * It runs in a full Redis too (maxmemory under noeviction), so a tenant can erase to make room: its first write
 * is a ZREM, XDEL or DEL, which Redis never refuses for memory, and Redis refuses a script without flags a
 * command that may grow memory only before the script's first write; the tombstone's INCR and XADD come after
 * the deletions. Keep a deletion first (the fault test redis-full-erasure checks it).
 */
export const FORGET_FACES_LUA = `
local function undeclared(names)
  local missing = {}
  for _, name in ipairs(names) do
    if not declared[name] then table.insert(missing, name) end
  end
  return missing
end

local function forget_faces(seqKey, logKey, prefix, imageHash, stem)
  local imageFacesKey = prefix .. ':image:' .. imageHash .. ':faces'
  local imageMatchesKey = prefix .. ':image:' .. imageHash .. ':matches'
  local unknown = undeclared({imageFacesKey, imageMatchesKey})
  if #unknown > 0 then return nil, unknown end
  local faceIds = {}
  local n = 0
  while true do
    local probe = prefix .. ':face:' .. stem .. '-' .. n
    if not declared[probe] then return nil, {probe} end
    if redis.call('EXISTS', probe) == 0 then break end
    table.insert(faceIds, stem .. '-' .. n)
    n = n + 1
  end
  local needed = {}
  for _, faceId in ipairs(faceIds) do
    table.insert(needed, prefix .. ':face:' .. faceId .. ':matches')
    if declared[prefix .. ':face:' .. faceId .. ':matches'] then
      for _, other in ipairs(redis.call('ZRANGE', prefix .. ':face:' .. faceId .. ':matches', 0, -1)) do
        table.insert(needed, prefix .. ':face:' .. other .. ':matches')
      end
    end
  end
  for _, otherImage in ipairs(redis.call('ZRANGE', imageMatchesKey, 0, -1)) do
    table.insert(needed, prefix .. ':image:' .. otherImage .. ':matches')
  end
  local missing = undeclared(needed)
  if #missing > 0 then return nil, missing end

  local touched = 0
  local seqs = {}
  for _, faceId in ipairs(faceIds) do
    local faceKey = key(prefix .. ':face:' .. faceId)
    local matchesKey = key(faceKey .. ':matches')
    for _, other in ipairs(redis.call('ZRANGE', matchesKey, 0, -1)) do
      redis.call('ZREM', key(prefix .. ':face:' .. other .. ':matches'), faceId)
    end
    local seq = redis.call('HGET', faceKey, 'seq')
    if seq then
      redis.call('XDEL', logKey, seq .. '-1')
      table.insert(seqs, seq)
    end
    redis.call('DEL', faceKey, matchesKey)
  end
  for _, otherImage in ipairs(redis.call('ZRANGE', imageMatchesKey, 0, -1)) do
    redis.call('ZREM', key(prefix .. ':image:' .. otherImage .. ':matches'), imageHash)
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

/**
 * KEYS: the tenant's face seq and log, then what keysToForget found. ARGV: tenant prefix, image hash, face id stem.
 * Returns {0, missing key names…} when it must be run again with more keys declared, else {1, removed…}.
 */
export const DELETE_IMAGE_FACES = `${DECLARED_KEYS_LUA}${FORGET_FACES_LUA}
local removed, missing = forget_faces(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if not removed then return {0, unpack(missing)} end
return {1, removed[1], removed[2], removed[4]}
`;

/** Most runs of a script that declares the keys it found missing: two suffice unless writers keep racing it. */
const MAX_DECLARE_ROUNDS = 8;

/**
 * The keys FORGET_FACES_LUA will touch for this image as they are now (read, not locked): its face and match
 * records, its faces found by probing their ids (plus the first id not taken, which the script probes too), their
 * match sets, and the match sets of the faces and images they matched. Two or three round trips, each pipelined.
 * A writer may add a face or a match before the script runs; the script then names what is missing.
 */
export async function keysToForget(redis: Redis, k: TenantKeys, stem: string, imageHash: string): Promise<string[]> {
  const faceIds: string[] = [];
  for (let batch = 0; ; batch += 16) {
    const probe = redis.pipeline();
    for (let n = batch; n < batch + 16; n++) probe.exists(k.face(`${stem}-${n}`));
    const exists = ((await probe.exec()) ?? []).map(([error, value]) => {
      if (error) throw error;
      return value === 1;
    });
    const firstMissing = exists.indexOf(false);
    for (let n = batch; n < batch + (firstMissing === -1 ? 16 : firstMissing); n++) faceIds.push(`${stem}-${n}`);
    if (firstMissing !== -1) break;
  }
  const read = redis.pipeline();
  for (const faceId of faceIds) read.zrange(k.faceMatches(faceId), '0', '-1');
  read.zrange(k.imageMatches(imageHash), '0', '-1');
  const lists = ((await read.exec()) ?? []).map(([error, value]) => {
    if (error) throw error;
    return value as string[];
  });
  const keys = new Set([k.imageFaces(imageHash), k.imageMatches(imageHash), k.face(`${stem}-${faceIds.length}`)]);
  faceIds.forEach((faceId, i) => {
    keys.add(k.face(faceId)).add(k.faceMatches(faceId));
    for (const other of lists[i]) keys.add(k.faceMatches(other));
  });
  for (const otherImage of lists[faceIds.length]) keys.add(k.imageMatches(otherImage));
  return [...keys];
}

/**
 * Runs a script built on FORGET_FACES_LUA: KEYS are `fixed` (the positions the script reads them from) then
 * `found`; while the script answers {0, missing names…} (a writer added a face or a match since they were read),
 * declares those too and runs it again. Answers the script's {1, …} without the leading 1. A script still missing
 * keys after MAX_DECLARE_ROUNDS is a TRYAGAIN error (503 + Retry-After on the API); it wrote nothing.
 */
export async function runDeclared(redis: Redis, script: string, fixed: string[], found: string[], args: (string | number)[]): Promise<number[]> {
  const keys = new Set([...fixed, ...found]);
  for (let round = 0; round < MAX_DECLARE_ROUNDS; round++) {
    const [done, ...rest] = (await redis.eval(script, keys.size, ...keys, ...args)) as [number, ...(string | number)[]];
    if (done === 1) return rest.map(Number);
    for (const name of rest) keys.add(String(name));
  }
  throw new Error(`TRYAGAIN the keys to erase kept changing for ${MAX_DECLARE_ROUNDS} rounds`);
}

/** The face index and match sets in Redis, one tenant at a time: the one seam both apps use for faces. */
export class FaceStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  /** Inserts the faces; their sequence numbers, or undefined when the tenant's image is gone (erased). */
  async insertFaces(tenant: TenantId, imageHash: string, faces: NewFace[]): Promise<number[] | undefined> {
    return (await this.insert(tenant, imageHash, faces))?.seqs;
  }

  /**
   * Inserts the faces (INSERT_FACES): their sequence numbers and the tenant's counter right after, or undefined
   * when the tenant's image is gone (erased).
   */
  async insert(tenant: TenantId, imageHash: string, faces: NewFace[]): Promise<{ seqs: number[]; head: number } | undefined> {
    const k = this.keys.tenant(tenant);
    const args: string[] = [k.prefix, imageHash];
    for (const face of faces) {
      args.push(face.faceId, Buffer.from(face.embedding.buffer, face.embedding.byteOffset, face.embedding.byteLength).toString('base64'));
      args.push(JSON.stringify({ box: face.box, landmarks: face.landmarks, score: face.score }));
    }
    const keys = [k.faceSeq(), k.faceLog(), k.image(imageHash), ...faces.map((face) => k.face(face.faceId))];
    const answer = (await this.redis.eval(INSERT_FACES, keys.length, ...keys, ...args)) as number[] | null;
    if (!answer) return undefined;
    const numbers = answer.map(Number);
    return { seqs: numbers.slice(0, -1), head: numbers[numbers.length - 1] };
  }

  /**
   * The tenant's log entries after `afterSeq`, oldest first, at most `count`, with the counter read after them
   * and, when `check` is given, the entry numbered `check` as it is now: one round trip (pipelined), whose extra
   * cost does not grow with the log.
   */
  async readLog(tenant: TenantId, afterSeq: number, options: { count?: number; check?: number } = {}): Promise<FaceLogRead> {
    const k = this.keys.tenant(tenant);
    const pipeline = this.redis.pipeline();
    pipeline.xrange(k.faceLog(), `(${afterSeq}-1`, '+', 'COUNT', options.count ?? 5000);
    pipeline.get(k.faceSeq());
    if (options.check !== undefined) pipeline.xrange(k.faceLog(), `${options.check}-1`, `${options.check}-1`);
    const answers = (await pipeline.exec()) ?? [];
    for (const [error] of answers) if (error) throw error;
    const read: FaceLogRead = { entries: (answers[0][1] as [string, string[]][]).map(parseLogEntry), head: Number(answers[1][1] ?? 0) };
    if (options.check !== undefined) {
      const [found] = answers[2][1] as [string, string[]][];
      read.checked = found ? parseLogEntry(found) : null;
    }
    return read;
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
    const keys = new Set([k.image(imageHash), k.imageFaces(imageHash), k.imageMatches(imageHash), ...record.faceIds.map((faceId) => k.face(faceId))]);
    for (const { faceId, match } of pairs) {
      args.push(faceId, match.faceId, match.imageHash, match.similarity);
      for (const key of [k.face(match.faceId), k.faceMatches(faceId), k.faceMatches(match.faceId), k.imageMatches(match.imageHash)]) keys.add(key);
    }
    const written = await this.redis.eval(FINISH_IMAGE_FACES, keys.size, ...keys, ...args);
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
    const fixed = [k.faceSeq(), k.faceLog()];
    const found = await keysToForget(this.redis, k, faceIdStem(tenant, imageHash), imageHash);
    const [removedFaces, updatedImages, tombstoneSeq] = await runDeclared(this.redis, DELETE_IMAGE_FACES, fixed, found, [k.prefix, imageHash, faceIdStem(tenant, imageHash)]);
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
