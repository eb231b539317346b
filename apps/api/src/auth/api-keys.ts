import { timingSafeEqual } from 'node:crypto';
import { applyDecorators, CanActivate, createParamDecorator, ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import type { Logger } from 'pino';
import { APP_LOGGER } from '@app/logging';
import { ApiExtension } from '@nestjs/swagger';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AppConfig, namedLikeBareKeys, parseApiKeys, sha256, TenantKey } from '@app/config';
import { AppError, DEFAULT_TENANT, ErrorCode, TenantId } from '@app/contracts';

/** Marks a controller or route as open without an API key (health, metrics); the OpenAPI document says so too. */
export const PUBLIC_ROUTE = 'publicRoute';
export const PUBLIC_EXTENSION = 'x-public';
export const Public = () => applyDecorators(SetMetadata(PUBLIC_ROUTE, true), ApiExtension(PUBLIC_EXTENSION, true));

declare module 'fastify' {
  interface FastifyRequest {
    /** Set once per request by TenantResolver: the caller's tenant, or null for a missing or unknown key. */
    tenant?: TenantId | null;
  }
}

/**
 * The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>`. Both headers naming different
 * keys present none that counts (CONFLICTING_KEYS): acting for either would be a guess (red-team: Authorization won).
 * So does either header sent twice: Node keeps the first `Authorization` and drops the rest (a proxy that reads
 * the last one would disagree about the caller; red team, stop 32) and joins two `x-api-key` with ", ".
 */
export function presentedKey(request: FastifyRequest): string | undefined {
  if (repeatsKeyHeader(request.raw.rawHeaders)) return CONFLICTING_KEYS;
  const header = request.headers.authorization;
  const bearer = typeof header === 'string' && header.toLowerCase().startsWith('bearer ') ? header.slice(7).trim() : undefined;
  const apiKey = typeof request.headers['x-api-key'] === 'string' ? request.headers['x-api-key'].trim() : undefined;
  if (bearer !== undefined && apiKey !== undefined && bearer !== apiKey) return CONFLICTING_KEYS;
  return bearer ?? apiKey;
}

/** Whether `Authorization` or `x-api-key` occurs more than once among the raw headers (name, value, name, …). */
function repeatsKeyHeader(rawHeaders: string[]): boolean {
  let authorization = 0;
  let apiKey = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (name === 'authorization') authorization++;
    else if (name === 'x-api-key') apiKey++;
  }
  return authorization > 1 || apiKey > 1;
}

/** What presentedKey answers for two different keys: never a configured key (API_KEYS entries cannot hold a NUL). */
const CONFLICTING_KEYS = '\u0000conflicting keys';

/**
 * Which tenant a request acts for. With API_KEYS set: the tenant of the presented key, compared as sha256
 * digests in constant time against every configured key (so timing says nothing about which key came close).
 * Without keys: the one DEFAULT_TENANT, whatever the request presents.
 */
@Injectable()
export class TenantResolver {
  private readonly keys: TenantKey[];

  constructor(config: AppConfig, @Inject(APP_LOGGER) logger: Logger) {
    this.keys = parseApiKeys(config.values.API_KEYS);
    const keysPerTenant = new Map<string, number>();
    for (const { tenant } of this.keys) keysPerTenant.set(tenant, (keysPerTenant.get(tenant) ?? 0) + 1);
    for (const tenant of namedLikeBareKeys(this.keys)) {
      logger.warn({ action: 'auth.bare_key_tenant_named', tenant }, `API_KEYS names tenant ${tenant}, the form of a bare key's tenant, without that bare key: its keys act for the data that bare key stored (intended when a bare key's tenant gets a new key; not for a new customer)`);
    }
    logger.info(
      { action: 'auth.tenants', tenants: Object.fromEntries(keysPerTenant) },
      this.enabled ? `${keysPerTenant.size} tenants, ${this.keys.length} API keys` : `no API_KEYS: one tenant (${DEFAULT_TENANT}), no key needed`,
    );
  }

  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /** The caller's tenant, or null when keys are on and the request has no valid key. Memoised on the request. */
  resolve(request: FastifyRequest): TenantId | null {
    if (request.tenant !== undefined) return request.tenant;
    request.tenant = this.enabled ? this.tenantOfKey(presentedKey(request)) : DEFAULT_TENANT;
    return request.tenant;
  }

  private tenantOfKey(key: string | undefined): TenantId | null {
    if (!key) return null;
    const digest = sha256(key);
    let found: TenantId | null = null;
    for (const stored of this.keys) if (timingSafeEqual(stored.digest, digest)) found = stored.tenant;
    return found;
  }

  /**
   * Rate-limit bucket: the caller's tenant (one budget however many keys it has), else the client address —
   * so rotating made-up keys buys nothing, and without API_KEYS presented keys are ignored.
   */
  tracker(request: FastifyRequest): string {
    const tenant = this.enabled ? this.resolve(request) : null;
    return tenant ? `tenant:${tenant}` : `ip:${request.ip}`;
  }

  /** The 401 for a request without a valid key (null when it has one, or keys are off). */
  refusal(request: FastifyRequest): AppError | null {
    if (this.resolve(request)) return null;
    if (!presentedKey(request)) return new AppError(ErrorCode.Unauthorized, 'an API key is required: send "Authorization: Bearer <key>" or "x-api-key: <key>"');
    if (presentedKey(request) === CONFLICTING_KEYS) return new AppError(ErrorCode.Unauthorized, 'more than one API key was sent (Authorization and x-api-key naming different keys, or either header twice): send one');
    return new AppError(ErrorCode.Unauthorized, 'the API key is not valid');
  }
}

/**
 * When API_KEYS is set, every route not marked @Public() needs a valid key, else 401. Runs after the rate
 * limiter, so failed attempts count against the client address.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly tenants: TenantResolver,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()])) return true;
    const refusal = this.tenants.refusal(context.switchToHttp().getRequest<FastifyRequest>());
    if (refusal) throw refusal;
    return true;
  }
}

/** The tenant the request acts for (ApiKeyGuard has let it through, so it has one). */
export const CallerTenant = createParamDecorator((_data: unknown, context: ExecutionContext): TenantId => {
  const tenant = context.switchToHttp().getRequest<FastifyRequest>().tenant;
  if (!tenant) throw new AppError(ErrorCode.Unauthorized, 'an API key is required');
  return tenant;
});
