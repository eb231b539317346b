import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './free-port';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO_ROOT = join(__dirname, '..', '..', '..');

export type LogLine = Record<string, unknown> & { action?: string; msg?: string };

/** One real API or worker process (the built dist/), with its JSON log lines collected. */
export class AppProcess {
  readonly logs: LogLine[] = [];
  private exitPromise: Promise<number | null>;

  private constructor(
    readonly kind: 'api' | 'worker',
    private readonly child: ChildProcess,
    readonly port: number | undefined,
  ) {
    // One line buffer per stream: a stderr chunk arriving between two halves of a stdout line must not cut it.
    const collectLines = (stream: NodeJS.ReadableStream | null) => {
      let buffer = '';
      stream?.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          try {
            this.logs.push(JSON.parse(line) as LogLine);
          } catch {
            this.logs.push({ msg: line });
          }
        }
      });
    };
    collectLines(child.stdout);
    collectLines(child.stderr);
    // 'close', not 'exit': it comes after the last output, so every log line is in `logs` once stop() resolves.
    this.exitPromise = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  static async start(kind: 'api' | 'worker', env: Record<string, string>, readyTimeoutMs = 60_000): Promise<AppProcess> {
    const app = await AppProcess.spawn(kind, env);
    await app.waitForLog((line) => line.action === (kind === 'api' ? 'api.listening' : 'worker.ready'), readyTimeoutMs);
    return app;
  }

  /** Starts the process without waiting for it to be ready (to watch it refuse to start). */
  static async spawn(kind: 'api' | 'worker', env: Record<string, string>): Promise<AppProcess> {
    const port = kind === 'api' ? await freePort() : undefined;
    const child = spawn(process.execPath, [join(REPO_ROOT, `dist/apps/${kind}/src/main.js`)], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        LOG_LEVEL: 'info',
        HOST: '127.0.0.1',
        // As the container image runs them (Dockerfile): V8's young generation capped at 2 MB per semi-space, and
        // jemalloc when this machine has it (env LD_PRELOAD: '' runs glibc's malloc, to compare).
        NODE_OPTIONS: '--max-semi-space-size=2',
        ...jemallocEnv(),
        ...(port ? { PORT: String(port) } : { WORKER_HTTP_PORT: '0' }),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new AppProcess(kind, child, port);
  }

  /** The exit code once the process has ended by itself (it is killed after `timeoutMs`). */
  async exitCode(timeoutMs = 60_000): Promise<number | null> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exitPromise;
    clearTimeout(timer);
    return code;
  }

  /** Resolves with the first log line (already seen or future) that matches. */
  async waitForLog(match: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    let seen = 0;
    while (Date.now() < deadline) {
      for (; seen < this.logs.length; seen++) if (match(this.logs[seen])) return this.logs[seen];
      if (this.exited) throw new Error(`${this.kind} exited before the expected log line:\n${this.tail()}`);
      await sleep(25);
    }
    throw new Error(`${this.kind} did not log the expected line within ${timeoutMs} ms:\n${this.tail()}`);
  }

  logsWith(action: string): LogLine[] {
    return this.logs.filter((line) => line.action === action);
  }

  tail(lines = 20): string {
    return this.logs
      .slice(-lines)
      .map((line) => JSON.stringify(line))
      .join('\n');
  }

  /** Sends a signal and waits for the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> {
    if (this.exited) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exitPromise;
    clearTimeout(timer);
    return code;
  }
}

/** Dockerfile's allocator setting (README "Memory allocator"), where the library is installed; scripts/start.mjs does the same. */
export function jemallocEnv(): Record<string, string> {
  const library = ['/usr/local/lib/libjemalloc.so.2', '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2'].find((path) => existsSync(path));
  return library ? { LD_PRELOAD: library, MALLOC_CONF: 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0' } : {};
}
