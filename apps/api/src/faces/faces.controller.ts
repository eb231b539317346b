import { Controller, Delete, Get, HttpCode, Param, Post, Req, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBadRequestResponse, ApiBody, ApiConsumes, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiPayloadTooLargeResponse, ApiServiceUnavailableResponse, ApiTags, ApiUnprocessableEntityResponse, ApiUnsupportedMediaTypeResponse } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ErrorCode, FacesView, TenantId } from '@app/contracts';
import { CallerTenant } from '../auth/api-keys';
import { ErrorResponseDto } from '../common/error.dto';
import { requestIdOf } from '../common/request-id';
import { ImageUploadReader, jsonObjectBody } from '../uploads/image-upload.reader';
import { ImageFetcher } from '../url-intake/image-fetcher';
import { FacesOutcome, FacesService } from './faces.service';

@ApiTags('faces')
@Controller()
export class FacesController {
  constructor(
    private readonly faces: FacesService,
    private readonly uploads: ImageUploadReader,
    private readonly fetcher: ImageFetcher,
  ) {}

  @Post('v1/faces')
  @HttpCode(200)
  @ApiOperation({ summary: "Find the faces of an image and every one of the caller's stored images with the same person; waits up to FACE_WAIT_MS" })
  @ApiConsumes('multipart/form-data', 'image/jpeg', 'image/png', 'image/webp', 'image/heic', 'application/octet-stream', 'application/json')
  @ApiBody({
    schema: {
      type: 'object',
      properties: {
        image: { type: 'string', format: 'binary', description: 'multipart field, raw body, or base64 in JSON' },
        url: { type: 'string', description: 'JSON only: a public http(s) URL of the image (FETCH_ALLOW_HOSTS opens private ones)' },
        imageHash: { type: 'string', description: 'JSON only: the sha256 of an image already stored (e.g. by POST /v1/analyses), so it is not sent again' },
      },
    },
  })
  @ApiOkResponse({ description: '{ imageHash, faces: [{ faceId, box, landmarks, score, matches: [{ imageHash, faceId, similarity }] (strongest FACE_MATCHES_MAX), matchCount }], skippedFaces, matchedImages, matchedImageCount, message? }' })
  @ApiAcceptedResponse({ description: 'not finished in time: { imageHash, state, url } with Location' })
  @ApiBadRequestResponse({ type: ErrorResponseDto, description: 'IMAGE_MISSING, IMAGE_EMPTY, INVALID_BASE64, INVALID_PARAMETER, URL_NOT_ALLOWED' })
  @ApiNotFoundResponse({ type: ErrorResponseDto, description: 'imageHash names no image of the caller' })
  @ApiPayloadTooLargeResponse({ type: ErrorResponseDto, description: 'IMAGE_TOO_LARGE; PAYLOAD_TOO_LARGE (too many multipart files or form fields)' })
  @ApiUnsupportedMediaTypeResponse({ type: ErrorResponseDto, description: 'IMAGE_UNSUPPORTED_FORMAT, UNSUPPORTED_MEDIA_TYPE' })
  @ApiUnprocessableEntityResponse({ type: ErrorResponseDto, description: 'IMAGE_TOO_MANY_PIXELS, IMAGE_DECODE_FAILED, IMAGE_BAD_SHAPE, IMAGE_CRASHED_WORKER, URL_FETCH_FAILED' })
  @ApiServiceUnavailableResponse({ type: ErrorResponseDto, description: 'QUEUE_FULL, SERVICE_UNAVAILABLE (with Retry-After)' })
  async submit(@CallerTenant() tenant: TenantId, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const requestId = requestIdOf(request);
    const json = jsonObjectBody(request);
    const given = json ? ['image', 'url', 'imageHash'].filter((name) => name in json) : [];
    if (given.length > 1) throw new AppError(ErrorCode.BadRequest, `send one of "image", "url" or "imageHash", not ${given.map((name) => `"${name}"`).join(' and ')}`);
    if (json && 'imageHash' in json) {
      if (typeof json.imageHash !== 'string') throw new AppError(ErrorCode.InvalidParameter, '"imageHash" must be a string');
      return this.answer(await this.faces.submitStored(tenant, requestId, json.imageHash), reply);
    }
    if (json && 'url' in json) {
      if (typeof json.url !== 'string') throw new AppError(ErrorCode.UrlNotAllowed, '"url" must be a string');
      return this.answer(await this.faces.submit(tenant, requestId, await this.fetcher.fetch(json.url, requestId, tenant, reply)), reply);
    }
    const outcome = await this.faces.submit(tenant, requestId, (await this.uploads.read(request, reply)).bytes);
    // Freed only after a normal return, when everything that read the bytes has settled (ImageUploadReader.release).
    this.uploads.release(request);
    return this.answer(outcome, reply);
  }

  @Get('v1/images/:hash/matches')
  @ApiOperation({ summary: "The image's faces and current match set (it grows as later images match)" })
  @ApiOkResponse({ description: 'as POST /v1/faces' })
  @ApiAcceptedResponse({ description: 'still being processed' })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  async matches(@CallerTenant() tenant: TenantId, @Param('hash') hash: string, @Res({ passthrough: true }) reply: FastifyReply) {
    return this.answer(await this.faces.matches(tenant, hash), reply);
  }

  @Delete('v1/images/:hash/faces')
  @ApiOperation({ summary: "Forget an image's faces: out of the caller's index and out of every other image's match set" })
  @ApiOkResponse({ description: '{ imageHash, removedFaces, updatedImages, removedSnapshots, snapshotPurgePending } (as DELETE /v1/images/:hash)' })
  @ApiNotFoundResponse({ type: ErrorResponseDto })
  forget(@CallerTenant() tenant: TenantId, @Param('hash') hash: string) {
    return this.faces.forget(tenant, hash);
  }

  private answer(outcome: FacesOutcome, reply: FastifyReply): FacesView | { imageHash: string; state: string; url: string } {
    if (outcome.kind === 'done') return outcome.view;
    const url = `/v1/images/${outcome.imageHash}/matches`;
    reply.status(202).header('location', url);
    return { imageHash: outcome.imageHash, state: 'waiting', url };
  }
}
