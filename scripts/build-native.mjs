// Builds native/faiss-face-index (the face index's FAISS binding) with g++ against Debian's libfaiss-dev (static
// libfaiss.a; BLAS, LAPACK and OpenMP linked as shared libraries), Node-API headers from node-api-headers and
// the C++ wrapper from node-addon-api: no node-gyp, so nothing is downloaded. Node-API is ABI-stable, so the
// addon loads in any Node from 18 on. Skipped, with one line saying so, when libfaiss-dev or g++ is missing:
// the worker then keeps int8 (usearch) face snapshots (README "Face matching at scale").
// `--if-needed`: only when the addon is older than its source. CI=true: a missing libfaiss-dev is an error.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const addon = join(root, 'native', 'faiss-face-index');
const source = join(addon, 'src', 'addon.cc');
const output = join(addon, 'build', 'faiss_face_index.node');
const faissHeader = '/usr/include/faiss/IndexHNSW.h';
const faissLibrary = '/usr/lib/x86_64-linux-gnu/libfaiss.a';

if (process.argv.includes('--if-needed') && existsSync(output) && statSync(output).mtimeMs > statSync(source).mtimeMs) process.exit(0);
const missing = [];
if (!existsSync(faissHeader) || !existsSync(faissLibrary)) missing.push('libfaiss-dev');
if (spawnSync('g++', ['--version']).status !== 0) missing.push('g++');
if (missing.length > 0) {
  const message = `face index: FAISS binding not built (missing: ${missing.join(', ')}; on Debian/Ubuntu: apt-get install ${missing.join(' ')}); the worker keeps int8 face snapshots`;
  if (process.env.CI === 'true') {
    console.error(message);
    process.exit(1);
  }
  console.warn(message);
  process.exit(0);
}
const require = createRequire(import.meta.url);
const napiHeaders = dirname(require.resolve('node-api-headers/include/node_api.h'));
const addonApi = dirname(require.resolve('node-addon-api/napi.h'));
mkdirSync(dirname(output), { recursive: true });
const started = Date.now();
execFileSync(
  'g++',
  ['-shared', '-fPIC', '-O2', '-std=c++17', '-fopenmp', '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS', `-I${addonApi}`, `-I${napiHeaders}`, source, faissLibrary, '-Wl,--as-needed', '-lblas', '-llapack', '-o', output],
  { stdio: 'inherit' },
);
console.log(`face index: FAISS binding built in ${((Date.now() - started) / 1000).toFixed(1)} s (${output})`);
