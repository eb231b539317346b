import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { faceIdStem, RedisKeys, TenantId } from '@app/contracts';
import { FaceStore } from '@app/storage/face-store';

/**
 * A stored image with one synthetic face, inserted as a worker inserts it (INSERT_FACES): the image's record
 * (its hash is the sha256 of `name`) and the face, whose id is the one a worker gives an image's first face (what
 * erasure probes). Returns the hash, the face id and its sequence number.
 */
export async function storeFace(client: Redis, store: FaceStore, keys: RedisKeys, tenant: TenantId, name: string, embedding: Float32Array): Promise<{ hash: string; faceId: string; seq: number }> {
  const hash = createHash('sha256').update(name).digest('hex');
  await client.hset(keys.tenant(tenant).image(hash), 'size', '1');
  const faceId = `${faceIdStem(tenant, hash)}-0`;
  const [seq] = (await store.insertFaces(tenant, hash, [{ faceId, box: { x: 0, y: 0, width: 50, height: 50 }, landmarks: [], score: 1, embedding }]))!;
  return { hash, faceId, seq };
}
