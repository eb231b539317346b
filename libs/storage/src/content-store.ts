import { TenantId } from '@app/contracts';

/**
 * Where images live: per tenant, addressed by the sha256 of their bytes. Each tenant has its own copy, so
 * erasing one tenant's image never touches another's, and whether a write happened says nothing about other
 * tenants. Another backend (S3, GCS) implements this with the tenant as a key prefix.
 */
export interface ContentStore {
  /** Stores the bytes under their hash if absent; returns true when this call wrote them. */
  put(tenant: TenantId, hash: string, bytes: Buffer): Promise<boolean>;
  get(tenant: TenantId, hash: string): Promise<Buffer | undefined>;
  has(tenant: TenantId, hash: string): Promise<boolean>;
  /** Deletes the tenant's copy and its noted models; returns true when there was a copy. */
  remove(tenant: TenantId, hash: string): Promise<boolean>;
  /**
   * Notes, beside the bytes, models asked of the image (names not noted yet are appended). Redis holds the
   * working record; this note is what survives when Redis loses writes (a restart without persistence, a
   * Sentinel failover to a replica that had not received them), so an image registered again from its bytes
   * is analysed again with the models its client asked for.
   */
  noteModels(tenant: TenantId, hash: string, models: string[]): Promise<void>;
  /** The models noted for the tenant's image (deduplicated, sorted); [] when none. */
  notedModels(tenant: TenantId, hash: string): Promise<string[]>;
  /**
   * A fresh path to stream an incoming image into before its hash is known (same volume as the store, so
   * `adopt` is an atomic rename). The caller deletes it if it does not adopt it.
   */
  stagingPath(tenant: TenantId): Promise<string>;
  /** Makes a staged file the tenant's copy of `hash` (or drops it when the copy exists); true when it became the copy. */
  adopt(tenant: TenantId, hash: string, stagedPath: string): Promise<boolean>;
}

export const CONTENT_STORE = Symbol('CONTENT_STORE');

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Refuses anything but a lowercase sha256 hex string: no path can be smuggled in through a hash. */
export function assertSha256(hash: string): void {
  if (!SHA256_HEX.test(hash)) throw new Error(`not a sha256 hex digest: ${JSON.stringify(hash.slice(0, 80))}`);
}

export function isSha256(hash: string): boolean {
  return SHA256_HEX.test(hash);
}
