import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Inject } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { AppError, ErrorBody, ErrorCode } from '@app/contracts';
import { AppConfig, Env } from '@app/config';
import { APP_LOGGER } from '@app/logging';
import { lingerAfterAnswer } from './raw-reply';
import { retryHintOf } from './retry-hint';

/** Text fields a multipart body may carry (@fastify/multipart's `fields` limit, set in main.ts). */
export const MULTIPART_MAX_FIELDS = 20;

type Limits = Pick<Env, 'MAX_IMAGE_BYTES' | 'MAX_JSON_BODY_BYTES' | 'MAX_IMAGES_PER_REQUEST'>;

/** Fastify's own error codes (body parsing, multipart limits) mapped to ours, with messages that name the limit. */
const FASTIFY_CODES: Record<string, { code: ErrorCode; status: number; message?: (limits: Limits) => string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: {
    code: ErrorCode.ImageTooLarge,
    status: 413,
    message: (l) => `the request body is larger than allowed: ${mb(l.MAX_IMAGE_BYTES)} for an image body (MAX_IMAGE_BYTES), ${mb(l.MAX_JSON_BODY_BYTES)} for JSON (MAX_JSON_BODY_BYTES)`,
  },
  FST_REQ_FILE_TOO_LARGE: { code: ErrorCode.ImageTooLarge, status: 413, message: (l) => `an uploaded file is larger than the ${mb(l.MAX_IMAGE_BYTES)} limit (MAX_IMAGE_BYTES)` },
  // Too many multipart parts is a body too large too: 413 with the code every 413 has (PAYLOAD_TOO_LARGE), naming the limit.
  FST_PARTS_LIMIT: { code: ErrorCode.PayloadTooLarge, status: 413, message: (l) => `the multipart body has too many parts: at most ${l.MAX_IMAGES_PER_REQUEST} files (MAX_IMAGES_PER_REQUEST) and ${MULTIPART_MAX_FIELDS} form fields` },
  FST_FILES_LIMIT: { code: ErrorCode.PayloadTooLarge, status: 413, message: (l) => `too many files in one request: at most ${l.MAX_IMAGES_PER_REQUEST} (MAX_IMAGES_PER_REQUEST)` },
  FST_FIELDS_LIMIT: { code: ErrorCode.PayloadTooLarge, status: 413, message: () => `too many form fields in one request: at most ${MULTIPART_MAX_FIELDS} (the multipart fields limit)` },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: ErrorCode.UnsupportedMediaType,
    status: 415,
    message: () => UNREAD_CONTENT_TYPE,
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: ErrorCode.ImageMissing, status: 400 },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: ErrorCode.BadRequest, status: 400 },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { code: ErrorCode.BadRequest, status: 400 },
};

/** The 415 for a body without a content-type or with one no parser reads (it said only "Unsupported Media Type"). */
const UNREAD_CONTENT_TYPE =
  'the body has no content-type or one this API does not read: send an image as multipart/form-data, as a raw body with content-type image/jpeg, image/png, image/webp, image/heic, … or application/octet-stream, or as JSON (application/json)';

function mb(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${+(bytes / (1024 * 1024)).toFixed(1)} MB` : `${bytes} bytes`;
}

const STATUS_CODES: Record<number, ErrorCode> = {
  400: ErrorCode.BadRequest,
  401: ErrorCode.Unauthorized,
  404: ErrorCode.NotFound,
  429: ErrorCode.RateLimited,
  413: ErrorCode.ImageTooLarge,
  415: ErrorCode.UnsupportedMediaType,
  503: ErrorCode.ServiceUnavailable,
};

/** Every error leaves the API as `{ error: { code, message } }` with the matching status. */
@Catch()
export class ApiExceptionFilter implements ExceptionFilter {
  constructor(
    @Inject(APP_LOGGER) protected readonly logger: Logger,
    protected readonly config: AppConfig,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const request = host.switchToHttp().getRequest<FastifyRequest>();
    // Terminus' readiness report (status, info, error, details) is what probes and operators read: keep it.
    if (exception instanceof HttpException && isHealthReport(exception.getResponse())) {
      void reply.status(exception.getStatus()).send(exception.getResponse());
      return;
    }
    const requestId = request?.id;
    if (clientAborted(request)) {
      // The client hung up mid-upload: nothing is wrong here and nobody is left to answer.
      this.logger.info({ action: 'http.client_abort', requestId, bytesDeclared: request.headers['content-length'], reason: (exception as Error)?.message }, 'the client closed the connection before its request was received');
      return;
    }
    const { status, body } = this.describe(exception, request);
    // A "try later" 503 (Redis away or full, the queue full, a job interrupted) is the service working as designed
    // under trouble that has its own warning: one warn line per request, not an error line each (an outage's burst
    // of uploads wrote one error per request).
    const tryLater = status === 503 && typeof body.details?.retryAfterSeconds === 'number';
    if (tryLater) this.logger.warn({ action: 'http.error', requestId, status, code: body.code, err: { message: (exception as Error)?.message } }, body.message);
    else if (status >= 500) this.logger.error({ action: 'http.error', requestId, status, code: body.code, err: exception }, body.message);
    else this.logger.info({ action: 'http.rejected', requestId, status, code: body.code }, body.message);
    if (this.unreadBodyTooLarge(request)) {
      void reply.header('connection', 'close');
      lingerAfterAnswer(request);
    }
    const retryAfter = body.details?.retryAfterSeconds;
    if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
    void reply.status(status).send(this.envelope(body));
  }

  /** The answer's body around the error (overridden where an older client expects another shape). */
  protected envelope(body: ErrorBody): object {
    return { error: body };
  }

  /**
   * A refusal before the body was read to its end, when what is left could be larger than any one image (a
   * 200 MB upload, a chunked body of unknown length): the connection is closed after the answer rather than
   * the rest read and thrown away. A small body is drained as usual, so clients that read the answer only
   * after sending everything still get it.
   */
  private unreadBodyTooLarge(request: FastifyRequest | undefined): boolean {
    if (!request?.raw || request.raw.complete) return false;
    const declared = request.headers['content-length'];
    return declared === undefined || Number(declared) > this.config.values.MAX_IMAGE_BYTES + 1024 * 1024;
  }

  private describe(exception: unknown, request: FastifyRequest | undefined): { status: number; body: ErrorBody } {
    if (exception instanceof AppError) {
      return { status: exception.httpStatus, body: { code: exception.code, message: exception.message, ...(exception.details ? { details: exception.details } : {}) } };
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const response = exception.getResponse();
      const message = status === 415 ? UNREAD_CONTENT_TYPE : typeof response === 'object' && response && 'message' in response ? String((response as { message: unknown }).message) : exception.message;
      return { status, body: { code: STATUS_CODES[status] ?? (status >= 500 ? ErrorCode.Internal : ErrorCode.BadRequest), message } };
    }
    const tryLater = retryHintOf(exception);
    if (tryLater) return { status: 503, body: { code: tryLater.code, message: tryLater.message, details: { retryAfterSeconds: tryLater.retryAfterSeconds } } };
    if (malformedMultipart(exception, request)) {
      return { status: 400, body: { code: ErrorCode.BadRequest, message: `the multipart body is malformed: ${(exception as Error).message} (a multipart/form-data body needs its boundary parameter, at most 70 characters, and a closing boundary)` } };
    }
    const fastifyError = exception as { code?: string; statusCode?: number; message?: string };
    const mapped = fastifyError?.code ? FASTIFY_CODES[fastifyError.code] : undefined;
    if (mapped) return { status: mapped.status, body: { code: mapped.code, message: mapped.message?.(this.config.values) ?? fastifyError.message ?? mapped.code } };
    if (typeof fastifyError?.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
      const status = fastifyError.statusCode;
      return { status, body: { code: STATUS_CODES[status] ?? ErrorCode.BadRequest, message: fastifyError.message ?? 'bad request' } };
    }
    return { status: 500, body: { code: ErrorCode.Internal, message: 'internal error' } };
  }
}

function isHealthReport(response: unknown): boolean {
  return typeof response === 'object' && response !== null && 'status' in response && 'details' in response && 'info' in response;
}

/**
 * What busboy (under @fastify/multipart) throws, as plain Errors, for a multipart body it cannot parse: no or an
 * empty boundary ("Multipart: Boundary not found"), one over 256 bytes (its search needle's limit), a body without
 * its closing boundary or cut short ("Unexpected end of multipart data", "… terminated early …"). Red-team: each
 * was a 500.
 */
const MULTIPART_PARSE_ERROR = /^Multipart: |unexpected end of multipart data|^The needle cannot/i;

function malformedMultipart(exception: unknown, request: FastifyRequest | undefined): boolean {
  return exception instanceof Error && MULTIPART_PARSE_ERROR.test(exception.message) && /^multipart\//i.test(request?.headers['content-type'] ?? '');
}

/** The connection is gone while the request's body was still arriving: the client aborted its upload. */
function clientAborted(request: FastifyRequest | undefined): boolean {
  const raw = request?.raw;
  return !!raw && !raw.complete && (raw.destroyed || !!raw.socket?.destroyed);
}

/**
 * POST /predict keeps the original work-queue client's answer shape on errors too: that client reads
 * `r.json()["success"]` first, so an error is `{ success: false, error: { code, message } }`.
 */
@Catch()
export class LegacyPredictExceptionFilter extends ApiExceptionFilter {
  protected override envelope(body: ErrorBody): object {
    return { success: false, error: body };
  }
}
