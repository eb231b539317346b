// `npm start`: build if needed, make sure a Redis is there, then run the API and one worker together.
// With REDIS_URL unset and nothing answering at 127.0.0.1:6379, starts `redis-server` from PATH with its
// data under ./data/redis. Ctrl-C / SIGTERM stops everything it started.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const say = (action, msg, extra = {}) =>
  console.log(JSON.stringify({ level: 'info', time: new Date().toISOString(), service: 'launcher', script: 'start.mjs', action, ...extra, msg }));

execFileSync('node', [join(root, 'scripts/build.mjs'), '--if-needed'], { stdio: 'inherit' });

/** True when something at host:port answers PING like a Redis. */
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

const children = [];
let stopping = false;
function stopAll(code) {
  if (stopping) return;
  stopping = true;
  say('launcher.stopping', 'stopping API, worker and any Redis started here');
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  setTimeout(() => process.exit(code), 15_000).unref();
  Promise.all(children.map((child) => new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r))))).then(() => process.exit(code));
}
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));
// `kill <npm pid>` kills npm without passing the signal on: when our parent is gone, stop as if signalled.
const parent = process.ppid;
setInterval(() => process.ppid !== parent && stopAll(0), 1000).unref();

const env = { ...process.env };
if (!env.REDIS_URL) {
  if (await redisAnswers('127.0.0.1', 6379)) {
    env.REDIS_URL = 'redis://127.0.0.1:6379';
    say('redis.found', 'using the Redis already running at redis://127.0.0.1:6379');
  } else {
    if (spawnSync('redis-server', ['--version']).error) {
      console.error(
        'No Redis at 127.0.0.1:6379 and no redis-server on PATH.\n' +
          'Install one (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis),\n' +
          'or point REDIS_URL at an existing Redis: REDIS_URL=redis://host:6379 npm start',
      );
      process.exit(1);
    }
    const dir = join(root, 'data', 'redis');
    mkdirSync(dir, { recursive: true });
    const redis = spawn('redis-server', ['--port', '6379', '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '60 1'], { stdio: 'ignore' });
    children.push(redis);
    redis.on('exit', (code) => !stopping && (say('redis.exited', `redis-server exited (${code})`), stopAll(1)));
    for (let i = 0; i < 50 && !(await redisAnswers('127.0.0.1', 6379)); i++) await new Promise((r) => setTimeout(r, 100));
    env.REDIS_URL = 'redis://127.0.0.1:6379';
    say('redis.started', `started redis-server on 127.0.0.1:6379 with its data in ${dir}`, { pid: redis.pid });
  }
}

for (const app of ['worker', 'api']) {
  const child = spawn('node', [join(root, `dist/apps/${app}/src/main.js`)], { env, stdio: 'inherit' });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    say('launcher.child_exited', `${app} exited (${code ?? signal}); stopping the rest`);
    stopAll(code || 1);
  });
}
say('launcher.started', `open http://localhost:${env.PORT || 3000} in a browser (Swagger UI at /docs); Ctrl-C stops everything`);
