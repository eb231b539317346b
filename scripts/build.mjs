// Builds the whole monorepo with one TypeScript pass and rewrites the @app/* path aliases
// (tsc-alias), so dist/ runs under plain `node` and inside worker threads.
// `--if-needed` skips the build when dist/ is newer than every source file.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const stamp = join(root, 'dist', '.build-stamp');

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

const sourceDirs = ['apps', 'libs', 'test', 'bench', 'scripts'].map((d) => join(root, d)).filter(existsSync);
if (process.argv.includes('--if-needed') && existsSync(stamp)) {
  const built = statSync(stamp).mtimeMs;
  const newest = Math.max(statSync(join(root, 'tsconfig.json')).mtimeMs, ...sourceDirs.map(newestSource));
  if (newest < built) process.exit(0);
}

rmSync(join(root, 'dist'), { recursive: true, force: true });
const bin = (name) => join(root, 'node_modules', '.bin', name);
execFileSync(bin('tsc'), ['-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
execFileSync(bin('tsc-alias'), ['-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
// The web page is static files: copied as they are, served by the API at /.
cpSync(join(root, 'apps', 'api', 'web'), join(root, 'dist', 'apps', 'api', 'web'), { recursive: true });
execFileSync('node', ['-e', `require('fs').writeFileSync(${JSON.stringify(stamp)}, String(Date.now()))`]);
