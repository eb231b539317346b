/** Where images live, addressed by the sha256 of their bytes. Another backend (S3, GCS) implements this. */
export interface ContentStore {
  /** Stores the bytes under their hash if absent; returns true when this call wrote them. */
  put(hash: string, bytes: Buffer): Promise<boolean>;
  get(hash: string): Promise<Buffer | undefined>;
  has(hash: string): Promise<boolean>;
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
