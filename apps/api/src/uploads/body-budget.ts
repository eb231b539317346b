import type { FastifyInstance } from 'fastify';
import { AppConfig } from '@app/config';
import { AppError } from '@app/contracts';
import { TenantResolver } from '../auth/api-keys';
import { hasBody, refuseBeforeBody } from '../common/raw-reply';
import { UploadBudget } from './upload-budget';

/** Routes whose multipart files are streamed to disk one at a time, each reserved while it streams. */
const STREAMING_UPLOAD_ROUTES = new Set(['/v1/analyses']);

/**
 * Bodies Fastify reads whole into memory (raw image bodies, JSON with base64 images) reserve their size in the
 * process's upload budget before a byte is read, and hold it until the answer is sent or the connection ends:
 * the declared length (or, for chunked bodies, the limit of their type), twice over for JSON, whose base64 is
 * decoded into a second copy. A multipart body to a route that reads one image into memory reserves that image's
 * limit; POST /v1/analyses streams its files to disk and reserves each as it streams it (ImageUploadReader).
 * The holder is the caller's tenant (or address), which may hold at most half the budget.
 */
export function registerBodyBudget(fastify: FastifyInstance, budget: UploadBudget, tenants: TenantResolver, config: AppConfig): void {
  const env = config.values;
  fastify.addHook('preParsing', async (request, reply, payload) => {
    if (!hasBody(request) || (request.isMultipart() && STREAMING_UPLOAD_ROUTES.has(request.routeOptions.url ?? ''))) return payload;
    const json = (request.headers['content-type'] ?? '').includes('json');
    const limit = json ? env.MAX_JSON_BODY_BYTES : env.MAX_IMAGE_BYTES;
    const declared = Number(request.headers['content-length']);
    const bytes = (Number.isFinite(declared) && declared > 0 ? Math.min(declared, limit) : limit) * (json ? 2 : 1);
    try {
      const release = await budget.acquire(bytes, tenants.tracker(request));
      reply.raw.once('close', release);
    } catch (error) {
      if (error instanceof AppError) return refuseBeforeBody(reply, error, false);
      throw error;
    }
    return payload;
  });
}
