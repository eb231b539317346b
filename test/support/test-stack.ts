import type Redis from 'ioredis';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess } from './app-process';
import { TestRedis } from './test-redis';

/**
 * One test file's own Redis servers, image folder, app processes and Redis clients; stop() ends and removes them
 * all. Apps start with REDIS_URL (the first server unless told), STORAGE_DIR and one ONNX thread.
 */
export class TestStack {
  readonly storageDir = mkdtempSync(join(tmpdir(), 'iiq-test-'));
  private readonly servers: TestRedis[] = [];
  private readonly apps: AppProcess[] = [];
  private readonly clients: Redis[] = [];

  /** The first Redis started. */
  get redis(): TestRedis {
    return this.servers[0];
  }

  async startRedis(options: Parameters<typeof TestRedis.start>[1] = {}): Promise<TestRedis> {
    const redis = await TestRedis.start(undefined, options);
    this.servers.push(redis);
    return redis;
  }

  /** A client of the test's own (closed by stop()). */
  client(redis = this.redis, options: Parameters<TestRedis['client']>[0] = {}): Redis {
    const client = redis.client(options);
    this.clients.push(client);
    return client;
  }

  env(redis = this.redis): Record<string, string> {
    return { REDIS_URL: redis.url, STORAGE_DIR: this.storageDir, ORT_INTRA_OP_THREADS: '1' };
  }

  /** Starts an app and waits until it is ready. */
  async start(kind: 'api' | 'worker', env: Record<string, string> = {}, redis = this.redis): Promise<AppProcess> {
    return this.adopt(await AppProcess.start(kind, { ...this.env(redis), ...env }));
  }

  /** Starts an app without waiting (to watch it refuse to start). */
  async spawn(kind: 'api' | 'worker', env: Record<string, string> = {}, redis = this.redis): Promise<AppProcess> {
    return this.adopt(await AppProcess.spawn(kind, { ...this.env(redis), ...env }));
  }

  private adopt(app: AppProcess): AppProcess {
    this.apps.push(app);
    return app;
  }

  async stop(): Promise<void> {
    this.clients.forEach((client) => client.disconnect());
    await Promise.all(this.apps.map((app) => app.stop()));
    await Promise.all(this.servers.map((server) => server.stop()));
    rmSync(this.storageDir, { recursive: true, force: true });
  }
}

/** Log lines at error or fatal level. */
export function errorLines(app: AppProcess) {
  return app.logs.filter((line) => line.level === 'error' || line.level === 'fatal');
}
