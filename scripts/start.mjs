// `npm start`: build if needed, make sure a Redis is there, then run the API and one worker together.
// With REDIS_URL unset and nothing answering at 127.0.0.1:LOCAL_REDIS_PORT (default 6379), starts
// `redis-server` from PATH with its data under ./data/redis. Ctrl-C / SIGTERM stops the apps first and a
// Redis started here last, so the apps close their connections cleanly (no ioredis error traces).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withAppRuntime } from './app-env.mjs';

const root = new URL('..', import.meta.url).pathname;
const say = (action, msg, extra = {}) =>
  console.log(JSON.stringify({ level: 'info', time: new Date().toISOString(), service: 'launcher', script: 'start.mjs', action, ...extra, msg }));

// `--no-build`: for callers that have just built (the tests, which must not rebuild dist/ under other suites).
if (!process.argv.includes('--no-build')) execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--if-needed'], { stdio: 'inherit' });
const { redisUnreachable } = createRequire(import.meta.url)(join(root, 'dist/libs/redis/src/redis-probe.js'));

/** True when something at host:port answers PING like a Redis (NOAUTH counts: it is one). */
function redisAnswers(host, port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => done(data.toString().startsWith('+PONG') || data.toString().startsWith('-NOAUTH')));
  });
}

/** Resolves when the child has exited and its output has all come through ('close', not 'exit'). */
const closed = new Map();
const exited = (child) => closed.get(child);
const track = (child) => (closed.set(child, new Promise((resolve) => child.once('close', resolve))), child);

const apps = [];
let redis;
let stopping = false;
/** Apps first (SIGTERM; a terminal's Ctrl-C has already sent them SIGINT), then the Redis started here. */
async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  say('launcher.stopping', redis ? 'stopping API and worker, then the Redis started here' : 'stopping API and worker');
  setTimeout(() => process.exit(code || 1), 15_000).unref();
  for (const app of apps) if (app.exitCode === null) app.kill('SIGTERM');
  await Promise.all(apps.map(exited));
  if (redis && redis.exitCode === null) {
    redis.kill('SIGTERM');
    await exited(redis);
  }
  say('launcher.stopped', 'stopped everything started here');
  process.exit(code);
}
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));
// The Redis runs in its own process group (so Ctrl-C does not reach it before the apps are done): never leave it behind.
process.on('exit', () => redis?.exitCode === null && redis.kill('SIGTERM'));
// `kill <npm pid>` kills npm without passing the signal on: when our parent is gone, stop as if signalled.
const parent = process.ppid;
setInterval(() => process.ppid !== parent && stopAll(0), 1000).unref();

const env = { ...process.env };
if (env.REDIS_SENTINELS) {
  // Sentinel: the apps check the configuration and ask the sentinels for the primary themselves.
  say('redis.sentinel', `using Redis through the sentinels at ${env.REDIS_SENTINELS}`);
} else if (env.REDIS_CLUSTER_NODES) {
  // Cluster: the apps check the configuration and discover the cluster from these seeds themselves.
  say('redis.cluster', `using the Redis Cluster at ${env.REDIS_CLUSTER_NODES}`);
} else if (env.REDIS_URL) {
  const problem = await redisUnreachable(env.REDIS_URL);
  if (problem) {
    console.error(problem);
    process.exit(1);
  }
} else {
  const port = Number(env.LOCAL_REDIS_PORT || 6379);
  const url = `redis://127.0.0.1:${port}`;
  if (await redisAnswers('127.0.0.1', port)) {
    env.REDIS_URL = url;
    // Said plainly: the product's keys (under QUEUE_PREFIX) go into a Redis something else started.
    say('redis.found', `using the Redis already running at ${url}, keys under the prefix ${env.QUEUE_PREFIX || '{iiq}'} (LOCAL_REDIS_PORT=<another port> starts a Redis of its own instead)`);
  } else {
    if (spawnSync('redis-server', ['--version']).error) {
      console.error(
        `No Redis at 127.0.0.1:${port} and no redis-server on PATH.\n` +
          'Install one (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis),\n' +
          'or point REDIS_URL at an existing Redis: REDIS_URL=redis://host:6379 npm start',
      );
      process.exit(1);
    }
    const dir = join(root, 'data', port === 6379 ? 'redis' : `redis-${port}`);
    mkdirSync(dir, { recursive: true });
    redis = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '60 1'], { stdio: 'ignore', detached: true }));
    let answered = false;
    redis.on('exit', (code) => {
      if (stopping) return;
      // Before it ever answered: most often the port is taken by something that is not Redis (redis-server's own
      // words go nowhere: its output is not ours to show).
      if (!answered) console.error(`redis-server could not start on 127.0.0.1:${port} (exit ${code}): something that is not Redis may listen there; stop it, or set LOCAL_REDIS_PORT to a free port`);
      else say('redis.exited', `redis-server exited (${code})`);
      stopAll(1);
    });
    for (let i = 0; i < 50 && !(answered = await redisAnswers('127.0.0.1', port)); i++) await sleep(100);
    env.REDIS_URL = url;
    say('redis.started', `started redis-server on 127.0.0.1:${port} with its data in ${dir}`, { pid: redis.pid });
  }
}

// The same V8 setting and allocator as the container image, unless NODE_OPTIONS / LD_PRELOAD say otherwise
// (LD_PRELOAD= turns jemalloc off). test/support/app-process.ts does the same for tests and benches.
withAppRuntime(env);
for (const name of ['worker', 'api']) {
  // The API's output goes through here: the address is announced only once it is really listening.
  const child = track(spawn(process.execPath, [join(root, `dist/apps/${name}/src/main.js`)], { env, stdio: ['inherit', name === 'api' ? 'pipe' : 'inherit', 'inherit'] }));
  apps.push(child);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    say('launcher.child_exited', `${name} exited (${code ?? signal}); stopping the rest`);
    stopAll(code || 1);
  });
  if (name === 'api') watchForListening(child);
}

function watchForListening(api) {
  let announced = false;
  let tail = ''; // the line may arrive split across chunks
  api.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    if (announced) return;
    const text = tail + chunk.toString();
    tail = text.slice(-64);
    if (!text.includes('"action":"api.listening"')) return;
    announced = true;
    say('launcher.started', `open http://localhost:${env.PORT || 3000} in a browser (Swagger UI at /docs); Ctrl-C stops everything`);
  });
}
