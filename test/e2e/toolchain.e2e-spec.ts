import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import semver from 'semver';
import { jemallocEnv, REPO_ROOT } from '../support/app-process';

/**
 * The toolchain around the code. No container engine here: the Dockerfile is read as data, its build stage is replayed on a copy of exactly
 * the paths it copies, and the Node line it ships is checked against .node-version, engines and every
 * installed package's own engines.
 */
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const stages = dockerfile.split(/^FROM /m).slice(1);
const instructions = (stage: string, name: string) =>
  stage
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => line.startsWith(`${name} `))
    .map((line) => line.slice(name.length + 1).trim());
const pinned = readFileSync(join(REPO_ROOT, '.node-version'), 'utf8').trim();
const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));

describe('Dockerfile build stage', () => {
  let context: string;

  beforeAll(() => {
    context = mkdtempSync(join(tmpdir(), 'iiq-image-'));
  });

  afterAll(() => rmSync(context, { recursive: true, force: true }));

  it('builds from a copy of exactly the paths it copies, and its dist/ holds no test or bench code', async () => {
    const [build] = stages;
    for (const copy of instructions(build, 'COPY')) {
      const parts = copy.split(/\s+/);
      const target = parts.pop()!;
      for (const source of parts) {
        const into = target.endsWith('/') || parts.length > 1 ? join(context, target, basename(source)) : join(context, target);
        cpSync(join(REPO_ROOT, source), into, { recursive: true });
      }
    }
    // Stands in for its `npm ci`: the same lockfile, already installed here.
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(context, 'node_modules'));
    const run = instructions(build, 'RUN').find((line) => line.includes('npm run build'));
    expect(run).toBeDefined();
    const buildCommand = run!.split('&&').find((part) => part.includes('npm run build'))!.trim();
    await promisify(execFile)('sh', ['-c', buildCommand], { cwd: context, timeout: 120_000 });

    const dist = join(context, 'dist');
    for (const entry of ['apps/api/src/main.js', 'apps/worker/src/main.js', 'apps/api/web/index.html', 'libs/models/src/inference.thread.js']) {
      expect(existsSync(join(dist, entry)) ? entry : `missing dist/${entry}`).toBe(entry);
    }
    expect(readdirSync(dist).sort()).toEqual(['apps', 'libs']);
    // The face index's FAISS binding, built by the same command from what the stage copied (native/).
    expect(existsSync(join(context, 'native/faiss-face-index/build/faiss_face_index.node'))).toBe(true);
    const specs = (readdirSync(dist, { recursive: true }) as string[]).filter((file) => /\.spec\.js$/.test(file));
    expect(specs).toEqual([]);
  });

  it('ships what the runtime stage and its entrypoint need from the build stage', () => {
    const runtime = stages[1];
    expect(instructions(runtime, 'COPY').filter((copy) => copy.startsWith('--from=build'))).toEqual([
      '--from=build /app/node_modules ./node_modules',
      '--from=build /app/dist ./dist',
      '--from=build /app/native/faiss-face-index/build ./native/faiss-face-index/build',
    ]);
    // The binding is compiled against Debian's static libfaiss and links BLAS, LAPACK and OpenMP at run time.
    expect(instructions(stages[0], 'RUN').join(' ')).toMatch(/apt-get install[^&]*\bg\+\+[^&]*\blibfaiss-dev\b/);
    expect(instructions(runtime, 'RUN').join(' ')).toMatch(/apt-get install[^&]*\blibblas3\b[^&]*\bliblapack3\b[^&]*\blibgomp1\b/);
    const entrypoint = readFileSync(join(REPO_ROOT, 'docker/entrypoint.sh'), 'utf8');
    expect(entrypoint).toContain('exec node dist/apps/api/src/main.js');
    expect(entrypoint).toContain('exec node dist/apps/worker/src/main.js');
  });
});

describe('the memory allocator', () => {
  it('is the same in the image, npm start and the test harness: jemalloc, preloaded, with the same MALLOC_CONF', () => {
    const runtime = stages[stages.length - 1];
    const env = instructions(runtime, 'ENV').join(' ');
    const preload = /LD_PRELOAD=(\S+)/.exec(env)?.[1];
    const conf = /MALLOC_CONF=(\S+)/.exec(env)?.[1];
    expect(preload).toBe('/usr/local/lib/libjemalloc.so.2');
    // The runtime stage installs the library and links it where LD_PRELOAD points, whatever the architecture.
    const run = instructions(runtime, 'RUN').join(' ');
    expect(run).toMatch(/apt-get install[^&]*\blibjemalloc2\b/);
    expect(run).toContain(`ln -s "$(ls /usr/lib/*-linux-gnu/libjemalloc.so.2)" ${preload}`);
    // npm start and npm run start:api / start:worker take it from scripts/app-env.mjs.
    const start = readFileSync(join(REPO_ROOT, 'scripts', 'app-env.mjs'), 'utf8');
    expect(start).toContain(`'${conf}'`);
    expect(start).toContain(`'${preload}'`);
    // The harness that runs every e2e and bench app process: the same setting where the library is installed.
    const harness = jemallocEnv();
    if (harness.LD_PRELOAD) expect(harness.MALLOC_CONF).toBe(conf);
  });
});

describe('the Node runtime', () => {
  it('is the same line in both image stages and in .node-version, and engines accepts it', () => {
    expect(stages.map((stage) => stage.split('\n')[0].split(' ')[0])).toEqual([`node:${pinned}-bookworm-slim`, `node:${pinned}-bookworm-slim`]);
    expect(semver.satisfies(pinned, manifest.engines.node)).toBe(true);
  });

  it('engines tells the truth: the oldest Node it accepts and the one the image ships meet every installed package', () => {
    const oldest = semver.minVersion(manifest.engines.node)!.version;
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8'));
    const refusing = Object.entries(lock.packages as Record<string, { engines?: { node?: string } }>)
      // Only what is installed here: optional builds for other platforms never are.
      .filter(([path, entry]) => path && entry.engines?.node && existsSync(join(REPO_ROOT, path)))
      .filter(([, entry]) => !semver.satisfies(oldest, entry.engines!.node!) || !semver.satisfies(pinned, entry.engines!.node!))
      .map(([path, entry]) => `${path} needs ${entry.engines!.node}`);
    expect(refusing).toEqual([]);
  });

  it('is what this suite runs on: a Node engines accepts, and in CI exactly the one the image ships', () => {
    expect(semver.satisfies(process.versions.node, manifest.engines.node)).toBe(true);
    if (process.env.CI) expect(process.versions.node).toBe(pinned);
  });
});

describe('npm install', () => {
  it('reads no unknown project config, and onnxruntime-node downloads nothing (its CPU runtime ships in the package)', async () => {
    const { stderr } = await promisify(execFile)('npm', ['config', 'get', 'registry'], { cwd: REPO_ROOT });
    expect(stderr).not.toMatch(/Unknown project config/);
    expect(manifest.allowScripts['onnxruntime-node']).toBe(false);
    const binaries = readdirSync(join(REPO_ROOT, 'node_modules/onnxruntime-node/bin/napi-v6', process.platform, process.arch));
    expect(binaries.filter((file) => /providers_(cuda|tensorrt)/.test(file))).toEqual([]);
  });
});

describe('npm run deps:check', () => {
  const check = async (outdated: Record<string, { current: string; latest: string }>) => {
    const file = join(mkdtempSync(join(tmpdir(), 'iiq-deps-')), 'outdated.json');
    writeFileSync(file, JSON.stringify(outdated));
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'scripts/deps-check.mjs'), '--outdated-json', file]);
      return { code: 0, stdout };
    } catch (error) {
      return { code: (error as { code: number }).code, stdout: (error as { stdout: string }).stdout };
    } finally {
      rmSync(dirname(file), { recursive: true, force: true });
    }
  };

  it('passes when nothing is a major behind, or only what the allow-list names (with its reason)', async () => {
    expect(await check({ zod: { current: '4.6.7', latest: '4.7.0' } })).toEqual({ code: 0, stdout: expect.stringContaining('every direct dependency is on its latest major') });
    const allowed = await check({ '@types/node': { current: '24.19.4', latest: '26.6.7' } });
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toContain(`@types/node 24.19.4 (latest 26.6.7): kept on purpose: ${manifest.depsCheck.allow['@types/node']}`);
  });

  it('fails on a direct dependency a major (or a 0.x minor) behind that is not on the allow-list, and ignores transitive ones', async () => {
    const behind = await check({ bullmq: { current: '6.7.0', latest: '7.0.0' }, sharp: { current: '0.35.5', latest: '0.36.0' }, 'not-a-direct-dependency': { current: '1.0.0', latest: '9.0.0' } });
    expect(behind.code).toBe(1);
    expect(behind.stdout).toContain('bullmq 6.7.0 (latest 7.0.0): BEHIND');
    expect(behind.stdout).toContain('sharp 0.35.5 (latest 0.36.0): BEHIND');
    expect(behind.stdout).not.toContain('not-a-direct-dependency');
  });
});
