import { lookup as dnsLookup, LookupAddress } from 'node:dns';
import http, { IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP, LookupFunction } from 'node:net';
import type { FastifyReply } from 'fastify';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig } from '@app/config';
import { AppError, ErrorCode, TenantId } from '@app/contracts';
import { APP_LOGGER } from '@app/logging';
import { ApiMetrics } from '../ops/api-metrics';
import { AddressPolicy } from './address-policy';
import { UploadBudget } from '../uploads/upload-budget';
import { StagedImage, StagedImageWriter } from '../uploads/staged-image';
import { CONTENT_STORE, ContentStore } from '@app/storage';

/** Takes one chunk of a response body; a returned promise holds the body back until it settles. */
type BodySink = (chunk: Buffer) => Promise<void> | void;

/**
 * Fetches an image by URL, hostile by default: http/https only; every address a name resolves to is
 * checked and the connection is pinned to a checked one (our lookup hands it to the socket), and the
 * address actually connected to is checked again; every redirect hop is checked the same way (at most
 * FETCH_MAX_REDIRECTS); connect and total time limits; the body is counted while it streams and cut off
 * past MAX_IMAGE_BYTES.
 */
@Injectable()
export class ImageFetcher {
  private readonly policy: AddressPolicy;

  constructor(
    private readonly config: AppConfig,
    private readonly metrics: ApiMetrics,
    private readonly budget: UploadBudget,
    @Inject(CONTENT_STORE) private readonly store: ContentStore,
    @Inject(APP_LOGGER) private readonly logger: Logger,
  ) {
    this.policy = new AddressPolicy(config.values.FETCH_ALLOW_HOSTS);
  }

  /**
   * The images at `urls`, fetched one at a time and streamed into staging files of the tenant's store: never
   * held whole in memory (the disk's write speed paces the response), at most MAX_URLS_PER_REQUEST of them. The
   * consumer adopts or discards each.
   */
  async *stageEach(urls: string[], requestId: string, tenant: TenantId): AsyncGenerator<StagedImage> {
    const env = this.config.values;
    if (urls.length > env.MAX_URLS_PER_REQUEST) throw new AppError(ErrorCode.BadRequest, `at most ${env.MAX_URLS_PER_REQUEST} URLs per request (MAX_URLS_PER_REQUEST)`);
    for (const url of urls) {
      const writer = await StagedImageWriter.open(this.store, tenant, env.MAX_IMAGE_BYTES);
      let staged: StagedImage;
      try {
        await this.fetchTo(url, requestId, (chunk) => writer.write(chunk));
        staged = await writer.finish();
      } catch (error) {
        await writer.discard();
        throw error;
      }
      yield staged;
    }
  }

  /**
   * The image at `url` in memory, under a reservation of MAX_IMAGE_BYTES of the upload budget held until `reply`
   * is sent (the caller keeps the bytes that long).
   */
  async fetch(rawUrl: string, requestId: string, tenant: TenantId, reply: FastifyReply): Promise<Buffer> {
    await this.budget.holdUntilSent(reply, this.config.values.MAX_IMAGE_BYTES, `tenant:${tenant}`);
    const chunks: Buffer[] = [];
    await this.fetchTo(rawUrl, requestId, (chunk) => void chunks.push(chunk));
    return Buffer.concat(chunks);
  }

  /** Fetches `rawUrl` (following checked redirects) and hands its body to `sink` chunk by chunk, waiting for each. */
  private async fetchTo(rawUrl: string, requestId: string, sink: BodySink): Promise<void> {
    const env = this.config.values;
    const deadline = Date.now() + env.FETCH_TIMEOUT_MS;
    let url = this.parse(rawUrl);
    for (let hop = 0; ; hop++) {
      const response = await this.get(url, deadline, requestId, sink);
      if (response.kind === 'body') return;
      if (hop >= env.FETCH_MAX_REDIRECTS) throw this.refuse(requestId, ErrorCode.UrlFetchFailed, `more than ${env.FETCH_MAX_REDIRECTS} redirects`);
      url = this.parse(new URL(response.location, url).toString());
    }
  }

  private parse(rawUrl: string): URL {
    let url: URL;
    try {
      url = new URL(rawUrl);
    } catch {
      throw new AppError(ErrorCode.UrlNotAllowed, 'not a valid absolute URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AppError(ErrorCode.UrlNotAllowed, `only http and https URLs are fetched, not ${url.protocol}`);
    if (url.username || url.password) throw new AppError(ErrorCode.UrlNotAllowed, 'URLs with credentials are not fetched');
    return url;
  }

  /** A lookup that only ever yields addresses the policy allows (unless the hostname itself is allow-listed). */
  private readonly guardedLookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { all: true, family: options.family as number | undefined }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, '', 4);
      const allowed = this.policy.hostAllowed(hostname) ? addresses : addresses.filter((entry) => this.policy.check(entry.address).allowed);
      if (allowed.length === 0) {
        const ranges = addresses.map((entry) => `${entry.address} (${this.policy.check(entry.address).range})`).join(', ');
        return callback(Object.assign(new Error(`${hostname} resolves only to addresses that are not public: ${ranges}`), { code: 'EURLNOTALLOWED' }), '', 4);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, allowed);
      callback(null, allowed[0].address, allowed[0].family);
    });
  };

  private get(url: URL, deadline: number, requestId: string, sink: BodySink): Promise<{ kind: 'body' } | { kind: 'redirect'; location: string }> {
    const env = this.config.values;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) && !this.policy.hostAllowed(host)) {
      const verdict = this.policy.check(host);
      if (!verdict.allowed) return Promise.reject(this.refuse(requestId, ErrorCode.UrlNotAllowed, `address ${host} is ${verdict.range}, not public`));
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) return Promise.reject(this.refuse(requestId, ErrorCode.UrlFetchFailed, `no answer within ${env.FETCH_TIMEOUT_MS} ms`));
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      let settled = false;
      /** Settles once: later events (a late chunk, a timer) find the promise already settled. */
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(totalTimer);
        return true;
      };
      const fail = (error: AppError) => {
        if (!settle()) return;
        request.destroy();
        reject(error);
      };
      const request = client.get(url, { lookup: this.guardedLookup, headers: { accept: 'image/*', 'user-agent': 'image-inference-queue' }, timeout: env.FETCH_CONNECT_TIMEOUT_MS });
      const totalTimer = setTimeout(() => fail(this.refuse(requestId, ErrorCode.UrlFetchFailed, `no complete answer within ${env.FETCH_TIMEOUT_MS} ms`)), remaining);
      request.on('timeout', () => fail(this.refuse(requestId, ErrorCode.UrlFetchFailed, `no connection within ${env.FETCH_CONNECT_TIMEOUT_MS} ms`)));
      request.on('socket', (socket) =>
        socket.once('connect', () => {
          // The address actually connected to must pass too (defence in depth against resolver tricks).
          const remote = socket.remoteAddress ?? '';
          if (!this.policy.hostAllowed(host) && !this.policy.check(remote).allowed) fail(this.refuse(requestId, ErrorCode.UrlNotAllowed, `connected address ${remote} is not public`));
        }),
      );
      request.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'EURLNOTALLOWED') fail(this.refuse(requestId, ErrorCode.UrlNotAllowed, error.message));
        else fail(this.refuse(requestId, ErrorCode.UrlFetchFailed, `cannot fetch ${url.host}: ${error.message}`));
      });
      request.on('response', (response: IncomingMessage) => {
        const status = response.statusCode ?? 0;
        if (status >= 300 && status < 400 && response.headers.location) {
          response.resume();
          if (settle()) resolve({ kind: 'redirect', location: response.headers.location });
          return;
        }
        if (status !== 200) {
          response.resume();
          return fail(this.refuse(requestId, ErrorCode.UrlFetchFailed, `${url.host} answered HTTP ${status}`));
        }
        const declared = Number(response.headers['content-length'] ?? 0);
        if (declared > env.MAX_IMAGE_BYTES) return fail(this.refuse(requestId, ErrorCode.ImageTooLarge, `the image is ${declared} bytes; the limit is ${env.MAX_IMAGE_BYTES}`));
        let size = 0;
        // The sink's last write; the body is done once it has finished too.
        let written: Promise<void> = Promise.resolve();
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > env.MAX_IMAGE_BYTES) return fail(this.refuse(requestId, ErrorCode.ImageTooLarge, `the response passed the ${env.MAX_IMAGE_BYTES}-byte limit`));
          const pending = sink(chunk);
          if (!pending) return;
          // Back-pressure: no more data until the sink has taken this chunk.
          response.pause();
          written = pending.then(
            () => void response.resume(),
            (error: unknown) => fail(error instanceof AppError ? error : this.refuse(requestId, ErrorCode.UrlFetchFailed, `the image could not be stored: ${(error as Error).message}`)),
          );
        });
        response.on('end', () => {
          void written.then(() => settle() && resolve({ kind: 'body' }));
        });
        response.on('error', (error) => fail(this.refuse(requestId, ErrorCode.UrlFetchFailed, `the response broke off: ${error.message}`)));
      });
    });
  }

  private refuse(requestId: string, code: ErrorCode, reason: string): AppError {
    this.logger.info({ action: 'url.refused', requestId, code, reason }, 'URL fetch refused');
    this.metrics.urlRefusals.inc({ code });
    return new AppError(code, reason);
  }
}
