import type { FastifyInstance } from 'fastify';
import { AppConfig } from '@app/config';
import { AppError } from '@app/contracts';
import { TenantResolver } from '../auth/api-keys';
import { hasBody, refuseBeforeBody } from '../common/raw-reply';
import { UploadBudget } from './upload-budget';

/**
 * Bodies Fastify reads whole into memory (raw image bodies, JSON with base64 images) reserve their size in the
 * process's upload budget before a byte is read, and hold it until the answer is sent or the connection ends: the
 * declared length, or for a chunked body the limit of its type. (Reserving as bytes arrive instead was tried:
 * requests that each hold part of their body and wait for the rest deadlock one another.) A holder (the caller's
 * tenant, or its address) holds at most half the budget and no reservation is larger than half, so one client,
 * however slow its body (cut when others wait for budget: watchBodyRate), never blocks the others. Multipart bodies are read by
 * @fastify/multipart from the raw request: their readers reserve their image (ImageUploadReader), and POST
 * /v1/analyses streams its files to disk without holding any.
 */
export function registerBodyBudget(fastify: FastifyInstance, budget: UploadBudget, tenants: TenantResolver, config: AppConfig): void {
  const env = config.values;
  fastify.addHook('preParsing', async (request, reply, payload) => {
    // (By content type: @fastify/multipart marks a request multipart only while parsing it, after this hook.)
    if (!hasBody(request) || (request.headers['content-type'] ?? '').toLowerCase().startsWith('multipart/')) return payload;
    const limit = (request.headers['content-type'] ?? '').includes('json') ? env.MAX_JSON_BODY_BYTES : env.MAX_IMAGE_BYTES;
    const declared = Number(request.headers['content-length']);
    const bytes = Number.isFinite(declared) && declared > 0 ? Math.min(declared, limit) : limit;
    try {
      await budget.holdUntilSent(reply, bytes, tenants.tracker(request));
    } catch (error) {
      if (error instanceof AppError) return refuseBeforeBody(reply, error, false);
      throw error;
    }
    return payload;
  });
}
