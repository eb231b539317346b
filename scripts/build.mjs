// Builds the whole monorepo with one TypeScript pass and rewrites the @app/* path aliases
// (tsc-alias), so dist/ runs under plain `node` and inside worker threads.
// `--if-needed` skips the build when dist/ is newer than every source file. `--apps-only` builds only what
// the container image runs (apps/ and libs/ without their specs, tsconfig.build.json): the Dockerfile's
// build stage copies nothing else.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const stamp = join(root, 'dist', '.build-stamp');
const tsconfig = process.argv.includes('--apps-only') ? 'tsconfig.build.json' : 'tsconfig.json';

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name === 'dist' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (/\.(ts|html|css)$/.test(entry.name) || path.includes('/web/') || entry.name === 'tsconfig.json') newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

// The face index's FAISS binding (skipped, with a line saying so, on a machine without libfaiss-dev).
execFileSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--if-needed'], { cwd: root, stdio: 'inherit' });
const sourceDirs = ['apps', 'libs', 'test', 'bench', 'scripts'].map((d) => join(root, d)).filter(existsSync);
if (process.argv.includes('--if-needed') && existsSync(stamp)) {
  const built = statSync(stamp).mtimeMs;
  const newest = Math.max(statSync(join(root, 'tsconfig.json')).mtimeMs, ...sourceDirs.map(newestSource));
  if (newest < built) process.exit(0);
}

rmSync(join(root, 'dist'), { recursive: true, force: true });
const bin = (name) => join(root, 'node_modules', '.bin', name);
execFileSync(bin('tsc'), ['-p', tsconfig], { cwd: root, stdio: 'inherit' });
execFileSync(bin('tsc-alias'), ['-p', tsconfig], { cwd: root, stdio: 'inherit' });
// The web page is static files: copied as they are, served by the API at /.
cpSync(join(root, 'apps', 'api', 'web'), join(root, 'dist', 'apps', 'api', 'web'), { recursive: true });
// The stamp is written last, so an interrupted build is never taken as done; an apps-only dist lacks the
// tests and bench, so it is never taken as a full build either.
if (tsconfig === 'tsconfig.json') writeFileSync(stamp, String(Date.now()));
