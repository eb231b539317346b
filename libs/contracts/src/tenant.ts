import { createHash } from 'node:crypto';

/**
 * A tenant: the owner of images, analyses, results, classify jobs, faces and match sets. Every stored record
 * carries one; nothing is ever read across tenants. Branded so that a plain string (say, an image hash) cannot
 * be passed where a tenant is expected.
 */
export type TenantId = string & { readonly __brand: 'TenantId' };

/** The one tenant of a deployment without API keys (today's single-user behaviour). */
export const DEFAULT_TENANT = 'default' as TenantId;

/**
 * Tenant names as configured in API_KEYS (`tenant:key`). Safe as a Redis key part, inside a Redis Cluster hash
 * tag (no braces) and as a directory name (no slash, cannot be `.` or `..`: it starts with a letter or digit).
 */
export const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function asTenantId(name: string): TenantId {
  if (!TENANT_NAME.test(name)) throw new Error(`not a valid tenant name: ${JSON.stringify(name.slice(0, 80))} (letters, digits, _ . -; at most 64; starts with a letter or digit)`);
  return name as TenantId;
}

/**
 * An opaque id derived from a tenant and what it names (an image hash, a model): 32 hex characters of
 * sha256 over the parts joined by NUL. Used for job and face ids, so that ids in the queue's event stream and in
 * the face log name no image hash, and two tenants' ids for the same image never collide.
 */
export function tenantScopedId(tenant: TenantId, ...parts: string[]): string {
  return createHash('sha256').update([tenant, ...parts].join('\0')).digest('hex').slice(0, 32);
}
