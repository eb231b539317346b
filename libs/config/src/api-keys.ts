import { createHash, scryptSync } from 'node:crypto';
import { asTenantId, TenantId } from '@app/contracts';

/** One configured API key: the tenant it acts for and the sha256 of the key (the key itself is not kept). */
export interface TenantKey {
  tenant: TenantId;
  digest: Buffer;
  /** Given without a tenant name (its tenant is bareKeyTenant's). */
  bare: boolean;
}

/** The form of bareKeyTenant's names. */
export const BARE_KEY_TENANT = /^key-[0-9a-f]{16}$/;

/**
 * Tenants named in API_KEYS in the form of a bare key's tenant (`key-<16 hex>`) that no bare key in the list
 * derives. Allowed, since that is how a bare key's tenant gets another key or a new one, and it holds that bare
 * key's data; but a name copied from the logs for a new customer would hand it someone else's images (red team,
 * stop 32), so the API warns about each at start.
 */
export function namedLikeBareKeys(keys: TenantKey[]): TenantId[] {
  const derived = new Set(keys.filter((key) => key.bare).map((key) => key.tenant));
  return [...new Set(keys.filter((key) => !key.bare && BARE_KEY_TENANT.test(key.tenant) && !derived.has(key.tenant)).map((key) => key.tenant))];
}

export const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/**
 * The tenant name of a bare key: `key-` and 16 hex of scrypt(key) (N = 2^15, r = 8: about 50 ms and 32 MiB per
 * guess, the cost OWASP recommends for passwords), so that the name, which is in every log line, is no fast
 * offline test of guesses at a weak key. Computed once per key at start.
 */
export function bareKeyTenant(key: string): string {
  let name = bareKeyNames.get(key);
  if (!name) {
    name = `key-${scryptSync(key, 'image-inference-queue tenant name', 8, { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }).toString('hex')}`;
    bareKeyNames.set(key, name);
  }
  return name;
}

/** Start-up parses API_KEYS more than once (validation, then the resolver): derive each name once. */
const bareKeyNames = new Map<string, string>();

/**
 * API_KEYS: a comma list of `tenant:key` pairs (a tenant may have several keys) or bare keys (no colon). A bare
 * key is a tenant of its own, named by bareKeyTenant. A key that itself contains a colon must be given with its
 * tenant (`name:part1:part2` is tenant `name`, key `part1:part2`). Throws on a bad tenant name, an empty key, a key
 * with other than visible ASCII (headers cannot carry it), one key given to two tenants, two tenant names that differ only in case, or a setting that is not empty yet names no key (`,`: an unfilled template).
 */
export function parseApiKeys(setting: string): TenantKey[] {
  const byDigest = new Map<string, TenantKey>();
  const entries = setting.split(',').map((item) => item.trim()).filter(Boolean);
  if (entries.length === 0 && setting.trim() !== '') throw new Error('API_KEYS is set but names no key; leave it empty to run without keys');
  for (const entry of entries) {
    const colon = entry.indexOf(':');
    const key = (colon < 0 ? entry : entry.slice(colon + 1)).trim();
    if (!key) throw new Error(`API_KEYS entry "${entry.slice(0, colon)}:" has an empty key`);
    // A key travels in an HTTP header (x-api-key, Authorization: Bearer), which carries visible ASCII only:
    // a key with any other character could never be presented, so it is refused here rather than at every call.
    if (!/^[\x21-\x7e]+$/.test(key)) throw new Error(`API_KEYS has a key${colon < 0 ? '' : ` of tenant "${entry.slice(0, colon).trim()}"`} with a character an HTTP header cannot carry (spaces, non-ASCII letters, control characters); use visible ASCII only`);
    const digest = sha256(key);
    const tenant = asTenantId(colon < 0 ? bareKeyTenant(key) : entry.slice(0, colon).trim());
    const seen = byDigest.get(digest.toString('hex'));
    if (seen && seen.tenant !== tenant) throw new Error(`API_KEYS gives one key to two tenants (${seen.tenant} and ${tenant})`);
    byDigest.set(digest.toString('hex'), { tenant, digest, bare: colon < 0 });
  }
  const keys = [...byDigest.values()];
  // Each tenant's images live in STORAGE_DIR/<tenant>/: on a disk that ignores case (macOS, SMB, some bind
  // mounts) two names that differ only in case would share one folder, and so each other's files.
  const byFoldedName = new Map<string, string>();
  for (const { tenant } of keys) {
    const other = byFoldedName.get(tenant.toLowerCase());
    if (other && other !== tenant) throw new Error(`API_KEYS names tenants "${other}" and "${tenant}", which differ only in case: a disk that ignores case would give them one image folder; rename one`);
    byFoldedName.set(tenant.toLowerCase(), tenant);
  }
  return keys;
}
