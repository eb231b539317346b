// `npm run deps:check`: lists every direct dependency that is a major version (for 0.x: a minor) behind the
// registry's latest, from `npm outdated`, and exits 1 unless each of them is on the allow-list in
// package.json ("depsCheck": { "allow": { name: reason } }). Not part of CI: a release elsewhere must not
// fail an unrelated change. `--outdated-json FILE` reads `npm outdated --json` output from FILE instead.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const allow = manifest.depsCheck?.allow ?? {};
const direct = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.devDependencies ?? {})]);

/** `npm outdated --json` (it exits 1 when anything is outdated, which is not an error here). */
function outdated() {
  const file = process.argv.indexOf('--outdated-json');
  if (file > 0) return JSON.parse(readFileSync(process.argv[file + 1], 'utf8'));
  // Under `npm run`, npm_execpath is npm's own CLI: run it on this Node (the one engines accepts), since npm
  // hides releases whose engines the running Node does not satisfy.
  const npm = process.env.npm_execpath;
  const args = ['outdated', '--json'];
  try {
    return JSON.parse(execFileSync(npm ? process.execPath : 'npm', npm ? [npm, ...args] : args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }) || '{}');
  } catch (error) {
    if (error.stdout) return JSON.parse(error.stdout);
    throw error;
  }
}

/** The part of a version that carries breaking changes under semver's caret rule: major, or 0.minor. */
const breakingPart = (version) => {
  const [major, minor] = version.split('.');
  return major === '0' ? `0.${minor}` : major;
};

const rows = [];
for (const [name, info] of Object.entries(outdated())) {
  if (!direct.has(name) || !info.current || !info.latest) continue;
  if (breakingPart(info.current) === breakingPart(info.latest)) continue;
  rows.push({ name, current: info.current, latest: info.latest, allowed: allow[name] });
}
const stale = Object.keys(allow).filter((name) => !rows.some((row) => row.name === name));

if (rows.length === 0) console.log('deps:check: every direct dependency is on its latest major');
for (const row of rows) {
  const verdict = row.allowed ? `kept on purpose: ${row.allowed}` : 'BEHIND: move it to the current major, or add it to depsCheck.allow in package.json with the reason (and to the README dependency notes)';
  console.log(`${row.name} ${row.current} (latest ${row.latest}): ${verdict}`);
}
for (const name of stale) console.log(`${name}: on the allow-list but not a major behind any more; remove its entry`);
process.exit(rows.some((row) => !row.allowed) ? 1 : 0);
