// npm run start:api / start:worker: one app, built if needed, with the image's runtime settings (app-env.mjs:
// jemalloc and V8's capped young generation; a worker's ~230 bytes a face at 10^6 faces were measured so).
// LD_PRELOAD must be set before a process starts, so the app runs as a child; signals are passed on, and this
// process exits with the app's code.
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { withAppRuntime } from './app-env.mjs';

const root = new URL('..', import.meta.url).pathname;
const app = process.argv[2];
if (app !== 'api' && app !== 'worker') {
  console.error('usage: node scripts/run-app.mjs api|worker');
  process.exit(2);
}
execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--if-needed'], { stdio: 'inherit' });
const child = spawn(process.execPath, [join(root, `dist/apps/${app}/src/main.js`)], { env: withAppRuntime({ ...process.env }), stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
// `kill <npm pid>` ends npm and its shell without passing the signal on: when our parent is gone, stop the app
// as if signalled (scripts/start.mjs does the same).
const parent = process.ppid;
setInterval(() => process.ppid !== parent && child.kill('SIGTERM'), 1000).unref();
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
