import { createHash } from 'node:crypto';
import { asTenantId, TenantId } from '@app/contracts';

/** One configured API key: the tenant it acts for and the sha256 of the key (the key itself is not kept). */
export interface TenantKey {
  tenant: TenantId;
  digest: Buffer;
}

export const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/**
 * API_KEYS: a comma list of `tenant:key` pairs (a tenant may have several keys) or bare keys. A bare key is a
 * tenant of its own, named `key-<16 hex of the key's sha256>` so that the name gives the key away to nobody.
 * Throws on a bad tenant name, an empty key, or one key given to two tenants.
 */
export function parseApiKeys(setting: string): TenantKey[] {
  const byDigest = new Map<string, TenantKey>();
  for (const entry of setting.split(',').map((item) => item.trim()).filter(Boolean)) {
    const colon = entry.indexOf(':');
    const key = (colon < 0 ? entry : entry.slice(colon + 1)).trim();
    if (!key) throw new Error(`API_KEYS entry "${entry.slice(0, colon)}:" has an empty key`);
    const digest = sha256(key);
    const tenant = colon < 0 ? asTenantId(`key-${digest.toString('hex').slice(0, 16)}`) : asTenantId(entry.slice(0, colon).trim());
    const seen = byDigest.get(digest.toString('hex'));
    if (seen && seen.tenant !== tenant) throw new Error(`API_KEYS gives one key to two tenants (${seen.tenant} and ${tenant})`);
    byDigest.set(digest.toString('hex'), { tenant, digest });
  }
  return [...byDigest.values()];
}
