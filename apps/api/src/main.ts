import 'reflect-metadata';
import { join } from 'node:path';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { Logger as NestPino } from 'nestjs-pino';
import { AppConfig, enforceIdleTimeout, httpLimits, listenProblem, nodeServerOptions, parseEnvOrExit } from '@app/config';
import { TenantResolver } from './auth/api-keys';
import { registerBodyGate } from './auth/body-gate';
import { LocalRefusalLimit } from './auth/local-refusal-limit';
import { registerBodyBudget } from './uploads/body-budget';
import { UploadBudget } from './uploads/upload-budget';
import { RedisThrottlerStorage } from './auth/redis-throttler-storage';
import { INFERENCE_QUEUE, RAW_IMAGE_CONTENT_TYPES, RedisKeys } from '@app/contracts';
import type Redis from 'ioredis';
import { createLogger, exitGracefullyOnSignals } from '@app/logging';
import { REDIS_CLIENT, RedisConnection, reconnecting, redisUnreachable } from '@app/redis';
import { ApiModule } from './api.module';
import { MULTIPART_MAX_FIELDS } from './common/api-exception.filter';
import { clientErrorHandler, frameworkErrorHandler } from './common/client-error';
import { clientRequestIdOf, generateRequestId } from './common/request-id';
import { ApiMetrics } from './ops/api-metrics';
import { mountQueueDashboard } from './ops/queue-dashboard';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import { setupSwagger } from './swagger';
import { applyHeapGrowingPercent } from './heap-growth';

const WEB_PAGE_CSP = "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

async function bootstrap(): Promise<void> {
  const logger = createLogger('api');
  const env = parseEnvOrExit((message) => logger.fatal({ action: 'config.invalid' }, message));
  applyHeapGrowingPercent(env.API_HEAP_GROWING_PERCENT);
  // One clear line (and exit 1) for the two common start-up mistakes, before Nest prints anything.
  const problem = (await redisUnreachable(RedisConnection.fromEnv(env))) ?? (await listenProblem('PORT', env.HOST, env.PORT));
  if (problem) {
    logger.fatal({ action: 'api.cannot_start', redis: RedisConnection.fromEnv(env).describe(), port: env.PORT }, problem);
    process.exit(1);
  }
  // HTTP time limits: Fastify's own defaults turn Node's request timeout off (requestTimeout 0) and leave the
  // checking interval at 30 s, so both are set here; the idle limit is enforceIdleTimeout's.
  const limits = httpLimits(env);
  // JSON bodies (base64 images inside) are capped as a whole; each decoded image is then held to MAX_IMAGE_BYTES.
  const adapter = new FastifyAdapter({
    bodyLimit: env.MAX_JSON_BODY_BYTES,
    trustProxy: trustProxySetting(env.TRUST_PROXY),
    return503OnClosing: true,
    genReqId: generateRequestId,
    requestIdHeader: false,
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler(logger),
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    http: nodeServerOptions(limits),
  });
  // abortOnError false: a failed start (say, an evicting Redis) reaches the catch below: one fatal JSON line naming the cause, exit 1.
  const app = await NestFactory.create<NestFastifyApplication>(ApiModule.forRoot(logger), adapter, { bufferLogs: true, abortOnError: false });
  app.useLogger(app.get(NestPino));

  const fastify = app.getHttpAdapter().getInstance();
  enforceIdleTimeout(fastify.server, limits.idleTimeout);
  // Every route the server answers, logged once at start (the OpenAPI contract test compares them with the document).
  const routes: string[] = [];
  fastify.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${route.url}`);
  });
  // The server's request id, which a client can quote: the same id is in the API's and the worker's logs. A
  // client's own well-formed X-Request-Id is echoed as X-Client-Request-Id and logged beside it.
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    const clientId = clientRequestIdOf(request);
    if (clientId) void reply.header('x-client-request-id', clientId);
    done();
  });
  registerBodyGate(fastify, app.get(TenantResolver), new RedisThrottlerStorage(app.get<Redis>(REDIS_CLIENT), app.get(RedisKeys)), app.get(AppConfig), app.get(LocalRefusalLimit));
  registerBodyBudget(fastify, app.get(UploadBudget), app.get(TenantResolver), app.get(AppConfig));
  await fastify.register(multipart, {
    // Enforced while streaming: a larger file fails with 413 before it is buffered.
    limits: { fileSize: env.MAX_IMAGE_BYTES, files: env.MAX_IMAGES_PER_REQUEST, fields: MULTIPART_MAX_FIELDS, fieldSize: 4096, parts: env.MAX_IMAGES_PER_REQUEST + MULTIPART_MAX_FIELDS, headerPairs: 100 },
  });
  // Raw image bodies arrive as a Buffer, capped at MAX_IMAGE_BYTES by Fastify while reading.
  fastify.addContentTypeParser(RAW_IMAGE_CONTENT_TYPES, { parseAs: 'buffer', bodyLimit: env.MAX_IMAGE_BYTES }, (_request, body, done) => done(null, body));

  // Request histogram by route template (not raw URL: bounded label values).
  const metrics = app.get(ApiMetrics);
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions?.url ?? 'unmatched';
    metrics.httpDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
    done();
  });

  if (env.ADMIN_PASSWORD) {
    await mountQueueDashboard(fastify, app.get<Queue>(getQueueToken(INFERENCE_QUEUE)), app.get<Redis>(REDIS_CLIENT), app.get(RedisKeys), {
      user: env.ADMIN_USER,
      password: env.ADMIN_PASSWORD,
      maxFailures: env.ADMIN_LOGIN_MAX_FAILURES,
      windowMs: env.ADMIN_LOGIN_WINDOW_MS,
    });
  }

  // The web page at /: static files copied into dist at build time. Same-origin only, no inline code.
  await fastify.register(fastifyStatic, {
    root: join(__dirname, '..', 'web'),
    prefix: '/',
    wildcard: false,
    decorateReply: false,
    setHeaders: (reply) => {
      reply.header('content-security-policy', WEB_PAGE_CSP);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
    },
  });
  setupSwagger(app);
  // While closing: answers tell clients to drop the connection, and connections that fall idle are closed,
  // so keep-alive clients cannot hold the server open (in-flight requests still finish).
  let closing = false;
  fastify.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) void reply.header('connection', 'close');
    done(null, payload);
  });
  const redis = app.get<Redis>(REDIS_CLIENT);
  exitGracefullyOnSignals(app, logger, {
    graceMs: env.SHUTDOWN_GRACE_MS,
    beforeClose: () => {
      closing = true;
      setInterval(() => fastify.server.closeIdleConnections(), 100).unref();
    },
    redisUnreachable: () => reconnecting(redis),
  });
  await app.listen(env.PORT, env.HOST);
  logger.info({ action: 'api.routes', routes }, `${routes.length} routes`);
  logger.info({ action: 'api.listening', host: env.HOST, port: env.PORT, url: await app.getUrl() }, `API listening on ${env.HOST}:${env.PORT}`);
}

/**
 * TRUST_PROXY as Fastify's trustProxy: off when empty (X-Forwarded-For is ignored, the socket's address is the
 * client), a hop count, or the addresses/CIDRs of the proxies allowed to set it.
 */
function trustProxySetting(value: string): boolean | string | ((address: string, hop: number) => boolean) {
  if (value === '') return false;
  if (!/^\d+$/.test(value)) return value;
  // A hop count: trust the nearest `hops` proxies (proxy-addr numbers the socket's peer 0).
  const hops = Number(value);
  return (_address, hop) => hop < hops;
}

bootstrap().catch((error) => {
  createLogger('api').fatal({ action: 'api.start_failed', err: error }, `API failed to start: ${(error as Error).message}`);
  process.exit(1);
});
