import { createHash, timingSafeEqual } from 'node:crypto';
import { CanActivate, ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AppConfig } from '@app/config';
import { AppError, ErrorCode } from '@app/contracts';

/** Marks a controller or route as open without an API key (health, metrics). */
export const PUBLIC_ROUTE = 'publicRoute';
export const Public = () => SetMetadata(PUBLIC_ROUTE, true);

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>`. */
export function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header === 'string' && header.toLowerCase().startsWith('bearer ')) return header.slice(7).trim();
  const apiKey = request.headers['x-api-key'];
  return typeof apiKey === 'string' ? apiKey.trim() : undefined;
}

/**
 * When API_KEYS is set, every route not marked @Public() needs a valid key, else 401. Keys are held only as
 * sha256 digests and compared in constant time; every stored digest is compared, so timing says nothing about
 * which key came close.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  private readonly digests: Buffer[];

  constructor(
    config: AppConfig,
    private readonly reflector: Reflector,
  ) {
    this.digests = config.values.API_KEYS.split(',').map((key) => key.trim()).filter(Boolean).map(sha256);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  canActivate(context: ExecutionContext): boolean {
    if (!this.enabled) return true;
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()])) return true;
    const key = presentedKey(context.switchToHttp().getRequest<FastifyRequest>());
    if (!key) throw new AppError(ErrorCode.Unauthorized, 'an API key is required: send "Authorization: Bearer <key>" or "x-api-key: <key>"');
    const digest = sha256(key);
    let match = false;
    for (const stored of this.digests) match = timingSafeEqual(stored, digest) || match;
    if (!match) throw new AppError(ErrorCode.Unauthorized, 'the API key is not valid');
    return true;
  }
}

/** Rate-limit bucket: the key's digest when one is presented, else the client address. */
export function rateLimitTracker(request: Record<string, unknown>): string {
  const key = presentedKey(request as unknown as FastifyRequest);
  return key ? `key:${sha256(key).toString('hex').slice(0, 32)}` : `ip:${String((request as { ip?: string }).ip)}`;
}
