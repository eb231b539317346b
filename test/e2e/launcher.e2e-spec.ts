import { ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { join } from 'node:path';
import { redisUnreachable } from '@app/redis/redis-probe';
import { REPO_ROOT } from '../support/app-process';
import { freePort } from '../support/free-port';
import { TestRedis } from '../support/test-redis';

/**
 * `npm start` (scripts/start.mjs) as a newcomer meets it. Never near the machine's Redis on 6379: the own-Redis
 * path is taken on a free port through LOCAL_REDIS_PORT, and every other case names its REDIS_URL.
 */
describe('npm start (scripts/start.mjs)', () => {
  it('Ctrl-C on the own-Redis path stops API and worker first and its Redis last, quietly, in under 3 s', async () => {
    const redisPort = await freePort();
    const apiPort = await portWithFreeNext(); // the worker takes PORT + 1
    const launcher = startLauncher({ LOCAL_REDIS_PORT: String(redisPort), PORT: String(apiPort) });
    try {
      await launcher.waitFor('launcher.started', 120_000);
      // Both apps up (the API announces itself; the worker is ready once its models are loaded).
      await launcher.waitFor('worker.ready', 120_000);
      expect(launcher.actions()).not.toContain('launcher.child_exited');
      expect(await redisUnreachable(`redis://127.0.0.1:${redisPort}`, 1000)).toBeUndefined();
      const sent = Date.now();
      // What a terminal does on Ctrl-C: SIGINT to the whole foreground process group.
      process.kill(-launcher.child.pid!, 'SIGINT');
      const code = await launcher.exit;
      const tookMs = Date.now() - sent;
      console.log(`Ctrl-C: launcher, API, worker and Redis stopped in ${tookMs} ms`);
      expect(code).toBe(0);
      expect(tookMs).toBeLessThan(3000);
      expect(await redisUnreachable(`redis://127.0.0.1:${redisPort}`, 1000)).toContain('ECONNREFUSED');
      // Apps first: both closed cleanly while Redis was still there, and only then the launcher stopped it.
      const order = launcher.actions().filter((action) => ['shutdown.completed', 'launcher.stopped'].includes(action));
      expect(order).toEqual(['shutdown.completed', 'shutdown.completed', 'launcher.stopped']);
      expect(launcher.output()).not.toMatch(/ioredis|ECONNREFUSED|Connection is closed|took too long|shutdown\.timeout/);
    } finally {
      launcher.kill();
      rmSync(join(REPO_ROOT, 'data', `redis-${redisPort}`), { recursive: true, force: true });
    }
  });

  it('an unreachable REDIS_URL gets one line naming it and the fix, no ioredis traces, exit 1', async () => {
    const port = await freePort();
    const launcher = startLauncher({ REDIS_URL: `redis://127.0.0.1:${port}`, PORT: String(await freePort()) });
    expect(await launcher.exit).toBe(1);
    const lines = launcher.output().trim().split('\n');
    expect(lines).toEqual([expect.stringContaining(`cannot reach Redis at redis://127.0.0.1:${port} (ECONNREFUSED): set REDIS_URL`)]);
    expect(lines[0]).toContain('install redis-server');
  });

  it('LOCAL_REDIS_PORT taken by something that is not Redis: one line naming the port and the fix, exit 1', async () => {
    const redisPort = await freePort();
    const squatter = await listen(redisPort);
    const launcher = startLauncher({ LOCAL_REDIS_PORT: String(redisPort), PORT: String(await portWithFreeNext()) });
    try {
      expect(await launcher.exit).toBe(1);
      const errors = launcher.output().trim().split('\n').filter((line) => !line.startsWith('{'));
      expect(errors).toEqual([expect.stringContaining(`redis-server could not start on 127.0.0.1:${redisPort}`)]);
      expect(errors[0]).toContain('set LOCAL_REDIS_PORT to a free port');
    } finally {
      launcher.kill();
      squatter.close();
      rmSync(join(REPO_ROOT, 'data', `redis-${redisPort}`), { recursive: true, force: true });
    }
  });

  it('a taken port is reported once, and the address is never announced', async () => {
    const redis = await TestRedis.start();
    const apiPort = await portWithFreeNext();
    const squatter = await listen(apiPort);
    try {
      const launcher = startLauncher({ REDIS_URL: redis.url, PORT: String(apiPort), QUEUE_PREFIX: 'launcher-taken' });
      expect(await launcher.exit).toBe(1);
      const output = launcher.output();
      expect(output.match(/already in use/g)).toEqual(['already in use']);
      expect(output).toContain(`port ${apiPort} on 127.0.0.1 is already in use: stop what listens there, or set PORT to a free port`);
      expect(output).not.toMatch(/open http|Nest application successfully started|EADDRINUSE/);
    } finally {
      squatter.close();
      await redis.stop();
    }
  });
});

interface Launcher {
  child: ChildProcess;
  exit: Promise<number | null>;
  output(): string;
  actions(): string[];
  waitFor(action: string, timeoutMs: number): Promise<void>;
  kill(): void;
}

/**
 * scripts/start.mjs in a process group of its own (as a shell would start it), with only the given settings;
 * `--no-build`, since `npm test` has just built and other suites run from that dist/.
 */
function startLauncher(settings: Record<string, string>): Launcher {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'scripts', 'start.mjs'), '--no-build'], {
    cwd: REPO_ROOT,
    detached: true,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', ORT_INTRA_OP_THREADS: '1', ...settings },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (chunk: Buffer) => (text += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('close', resolve));
  const actions = () => [...text.matchAll(/"action":"([^"]+)"/g)].map((match) => match[1]);
  return {
    child,
    exit,
    output: () => text,
    actions,
    async waitFor(action, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!actions().includes(action)) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no ${action} from the launcher:\n${text.slice(-3000)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    // Whatever happened, leave nothing running: the launcher's group, and the Redis it started in a group of its own.
    kill() {
      const redisPid = /"action":"redis.started","pid":(\d+)/.exec(text)?.[1];
      for (const group of [child.pid, redisPid && Number(redisPid)]) {
        try {
          if (group) process.kill(-group, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}

/** A free port whose next port is free too (the worker's default is PORT + 1). */
async function portWithFreeNext(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const next = await listen(port + 1).catch(() => undefined);
    if (next) {
      await new Promise((resolve) => next.close(resolve));
      return port;
    }
  }
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
