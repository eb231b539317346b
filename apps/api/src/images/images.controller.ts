import { Controller, Get, Param, Req, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBadRequestResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ErrorResponseDto } from '../common/error.dto';
import { requestIdOf } from '../common/request-id';
import { requireImageHash } from '../common/image-hash';
import { ImagesService } from './images.service';

@ApiTags('images')
@Controller('v1/images')
export class ImagesController {
  constructor(private readonly images: ImagesService) {}

  @Get(':hash')
  @ApiOperation({ summary: "An image's metadata and every requested model's state and result" })
  @ApiOkResponse({ description: '{ image: { hash, bytes, format, width, height, firstSeen }, models: { <name>: { state, url, result?, error? } } }' })
  @ApiBadRequestResponse({ type: ErrorResponseDto, description: 'INVALID_PARAMETER: not a sha256' })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  describe(@Param('hash') hash: string) {
    return this.images.describe(hash);
  }

  @Get(':hash/content')
  @ApiOperation({ summary: 'The stored image bytes (for galleries and previews); content-addressed, so cacheable forever' })
  @ApiProduces('image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/avif', 'image/heic')
  @ApiBadRequestResponse({ type: ErrorResponseDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  async content(@Param('hash') hash: string, @Res({ passthrough: true }) reply: FastifyReply): Promise<Buffer> {
    const { bytes, format } = await this.images.content(hash);
    // Only raster images whose header libvips (and for HEIF, libheif) accepted are ever stored; nosniff and a sandbox keep a browser from treating them as anything else.
    void reply
      .header('content-type', `image/${format}`)
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', "default-src 'none'; sandbox")
      .header('cache-control', 'private, max-age=31536000, immutable');
    return bytes;
  }

  @Get(':hash/results/:model')
  @ApiOperation({ summary: "One model's result for an image; an expired result is computed again (202 meanwhile)" })
  @ApiOkResponse({ description: '{ state: completed, model, task, result, computedAt, workerId } or { state: failed, error }' })
  @ApiAcceptedResponse({ description: '{ state } while the job waits or runs' })
  @ApiBadRequestResponse({ type: ErrorResponseDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  async result(@Param('hash') hash: string, @Param('model') model: string, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const lookup = await this.images.result(hash, model, requestIdOf(request));
    if (lookup.kind === 'ready') return lookup.record;
    reply.status(202);
    return { state: lookup.state, model };
  }

  @Get(':hash/events')
  @ApiOperation({ summary: 'Server-sent events: one `result` event per model as it finishes, then `done` and the stream closes' })
  @ApiProduces('text/event-stream')
  @ApiBadRequestResponse({ type: ErrorResponseDto })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  async events(@Param('hash') hash: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    requireImageHash(hash);
    let started = false;
    let closed = false;
    request.raw.on('close', () => (closed = true));
    const write = (event: string, data: unknown) => {
      if (!started) {
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': request.id });
        started = true;
      }
      if (!closed) reply.raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    try {
      const outcome = await this.images.follow(hash, requestIdOf(request), (model, view) => write('result', { model, ...view }), () => closed);
      write(outcome === 'done' ? 'done' : 'timeout', { hash });
    } finally {
      if (started) reply.raw.end();
    }
  }
}
