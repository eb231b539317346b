import { Controller, Delete, Get, Inject, Param, Req, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBadRequestResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiProduces, ApiTags, ApiTooManyRequestsResponse } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ErrorCode, TenantId } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { CallerTenant } from '../auth/api-keys';
import { ErrorResponseDto } from '../common/error.dto';
import { requestIdOf } from '../common/request-id';
import { retryHintOf } from '../common/retry-hint';
import { EventStreamSlots } from './event-stream-slots';
import { ImagesService } from './images.service';

/** A comment line every this many ms keeps proxies and clients from timing out an idle event stream. */
const SSE_HEARTBEAT_MS = 15_000;

@ApiTags('images')
@Controller('v1/images')
export class ImagesController {
  constructor(
    private readonly images: ImagesService,
    private readonly streams: EventStreamSlots,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {}

  @Get(':hash')
  @ApiOperation({ summary: "An image's metadata and every requested model's state and result (the caller's own image only)" })
  @ApiOkResponse({ description: '{ image: { hash, bytes, format, width, height, firstSeen }, models: { <name>: { state, url, result?, error? } } }' })
  @ApiBadRequestResponse({ type: ErrorResponseDto, description: 'INVALID_PARAMETER: not a sha256' })
  @ApiNotFoundResponse({ type: ErrorResponseDto, description: 'NOT_FOUND: the caller has no such image' })
  describe(@CallerTenant() tenant: TenantId, @Param('hash') hash: string, @Req() request: FastifyRequest) {
    return this.images.describe(tenant, hash, requestIdOf(request));
  }

  @Delete(':hash')
  @ApiOperation({ summary: "Erase the caller's image: metadata, results, faces and match entries on both sides, its crash record, queued jobs, and the stored bytes" })
  @ApiOkResponse({ description: '{ imageHash, existed, removedFaces, updatedImages, removedResults, removedCrashRecord, removedBytes, removedSnapshots, snapshotPurgePending, removedJobs } (snapshotPurgePending: some face-index snapshot files could not be deleted yet; workers retry, the faces are no longer returned)' })
  @ApiBadRequestResponse({ type: ErrorResponseDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto, description: 'NOT_FOUND: the caller has no such image' })
  erase(@CallerTenant() tenant: TenantId, @Param('hash') hash: string, @Req() request: FastifyRequest) {
    return this.images.erase(tenant, hash, requestIdOf(request));
  }

  @Get(':hash/content')
  @ApiOperation({ summary: "The caller's stored image bytes (for galleries and previews); content-addressed, so cacheable forever" })
  @ApiProduces('image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/avif', 'image/heic')
  @ApiOkResponse({ description: 'the bytes as stored, typed by their format', schema: { type: 'string', format: 'binary' } })
  @ApiBadRequestResponse({ type: ErrorResponseDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  async content(@CallerTenant() tenant: TenantId, @Param('hash') hash: string, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Promise<Buffer> {
    const { bytes, format } = await this.images.content(tenant, hash, requestIdOf(request));
    // Only raster images whose header libvips (and for HEIF, libheif) accepted are ever stored; nosniff and a sandbox keep a browser from treating them as anything else.
    void reply
      .header('content-type', `image/${format}`)
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', "default-src 'none'; sandbox")
      .header('cache-control', 'private, max-age=31536000, immutable');
    return bytes;
  }

  @Get(':hash/results/:model')
  @ApiOperation({ summary: "One model's result for the caller's image; an expired result is computed again (202 meanwhile)" })
  @ApiOkResponse({ description: '{ state: completed, model, task, result, computedAt, workerId } or { state: failed, error }' })
  @ApiAcceptedResponse({ description: '{ state } while the job waits or runs' })
  @ApiBadRequestResponse({ type: ErrorResponseDto, description: 'UNKNOWN_MODEL: not a model an analysis can run (as POST /v1/analyses)' })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  async result(@CallerTenant() tenant: TenantId, @Param('hash') hash: string, @Param('model') model: string, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const lookup = await this.images.result(tenant, hash, model, requestIdOf(request));
    if (lookup.kind === 'ready') return lookup.record;
    reply.status(202);
    return { state: lookup.state, model };
  }

  @Get(':hash/events')
  @ApiOperation({ summary: 'Server-sent events: one `result` event per model as it finishes, then `done` (or `erased`, `timeout`) and the stream closes' })
  @ApiProduces('text/event-stream')
  @ApiOkResponse({
    description:
      'an event stream: `result` events ({ model, state, url, result?, error?, computedAt }), then one of `done`, `erased`, `timeout` ({ hash }), or `error` ({ hash, code, message, retryAfterSeconds? }) when it broke off: ' +
      'with `retryAfterSeconds` (and an SSE `retry:` field in ms) it is what a 503 would have said (SERVICE_UNAVAILABLE: Redis full or away; QUEUE_FULL): open the stream again after that wait; comment lines keep it alive',
    schema: { type: 'string' },
  })
  @ApiBadRequestResponse({ type: ErrorResponseDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  @ApiTooManyRequestsResponse({ type: ErrorResponseDto, description: 'RATE_LIMITED: SSE_MAX_PER_TENANT streams already open for this key (Retry-After)' })
  async events(@CallerTenant() tenant: TenantId, @Param('hash') hash: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    // A refusal (bad id, no such image) is a normal JSON error; past this point the answer is a stream.
    await this.images.requireImage(tenant, hash, requestIdOf(request));
    const release = this.streams.acquire(tenant);
    let closed = false;
    let heartbeat: NodeJS.Timeout | undefined;
    request.raw.on('close', () => (closed = true));
    const write = (event: string, data: unknown) => !closed && reply.raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    try {
      reply.hijack();
      // The head and a first comment go out at once, so clients and proxies see the stream open before any result.
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no', 'x-request-id': request.id });
      reply.raw.write(': stream open\n\n');
      heartbeat = setInterval(() => !closed && reply.raw.write(': heartbeat\n\n'), SSE_HEARTBEAT_MS);
      const outcome = await this.images.follow(tenant, hash, requestIdOf(request), (model, view) => write('result', { model, ...view }), () => closed);
      write(outcome, { hash });
    } catch (error) {
      // The access log says only 200: the cause (Redis frozen past REDIS_COMMAND_TIMEOUT_MS, a 503 of the queue) is here.
      // A "try later" failure (Redis full or away, the queue full) says what its 503 would have: code, message and
      // the wait, also as the SSE `retry:` field (ms), so a client opens the stream again then (which queues the
      // missing pairs again), instead of reading a result that nothing computes.
      const hint = retryHintOf(error);
      this.logger.warn({ action: 'image.events_broken', requestId: requestIdOf(request), tenant, imageHash: hash, code: hint?.code, retryAfterSeconds: hint?.retryAfterSeconds, err: error }, 'an event stream broke off with an error event');
      if (hint && !closed) reply.raw.write(`retry: ${hint.retryAfterSeconds * 1000}\n`);
      write('error', hint ? { hash, ...hint } : { hash, code: ErrorCode.Internal, message: 'the stream broke off; read GET /v1/images/:hash instead' });
    } finally {
      clearInterval(heartbeat);
      release();
      reply.raw.end();
    }
  }
}
