import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppProcess, REPO_ROOT } from '../support/app-process';
import { TestRedis } from '../support/test-redis';

/** The ```bash blocks of one README section (from its heading to the next heading of the same or a higher level). */
function bashBlocks(readme: string, heading: string): string[] {
  const level = heading.split(' ')[0].length;
  const blocks: string[] = [];
  let inSection = false;
  let block: string[] | undefined;
  let fenced = false;
  for (const line of readme.split('\n')) {
    if (line.startsWith('```')) {
      fenced = !fenced;
      if (inSection && fenced && line === '```bash') block = [];
      else if (inSection && !fenced && block) {
        blocks.push(block.join('\n'));
        block = undefined;
      }
      continue;
    }
    if (fenced) {
      block?.push(line);
      continue;
    }
    const marks = /^(#+) /.exec(line)?.[1].length;
    if (line === heading) inSection = true;
    else if (marks !== undefined && marks <= level) inSection = false;
  }
  if (blocks.length === 0) throw new Error(`README has no bash block under "${heading}"`);
  return blocks;
}

/**
 * The README's examples, run as printed with bash against a real API and worker (only the address changed to
 * the test's): a command that cannot run (an argument list too long, a missing file, a typo) fails here, not in
 * a newcomer's terminal. Commands that start the product (npm …) are the launcher tests' business and are left
 * out; answers are not compared (int8 probabilities vary by CPU; examples that fetch example.org fail offline).
 */
describe('README examples run as printed', () => {
  let redis: TestRedis;
  const apps: AppProcess[] = [];
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

  beforeAll(async () => {
    redis = await TestRedis.start();
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.stop()));
    await redis?.stop();
  });

  const run = (script: string, api: AppProcess) => {
    const lines = script
      .split('\n')
      .filter((line) => !/^\s*(npm |[A-Z_]+=\S+ npm )/.test(line))
      .join('\n')
      .replaceAll('http://localhost:3000', api.url);
    // In a folder of its own (the examples write files such as image.jpg) that sees the repository's test/.
    const cwd = mkdtempSync(join(tmpdir(), 'iiq-readme-'));
    symlinkSync(join(REPO_ROOT, 'test'), join(cwd, 'test'));
    try {
      return spawnSync('bash', ['-euo', 'pipefail', '-c', lines], { cwd, encoding: 'utf8', timeout: 120_000 });
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  };

  // "Try it" with its subsections: classify, the web page, analyses, face matching.
  it.each([['## Try it']])('%s', async (heading) => {
    if (apps.length === 0) {
      const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'readme', ORT_INTRA_OP_THREADS: '1' };
      apps.push(...(await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)])));
    }
    const blocks = bashBlocks(readme, heading);
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) {
      const result = run(block, apps[0]);
      expect({ block: block.slice(0, 80), status: result.status, stderr: result.stderr.slice(-500) }).toEqual({ block: block.slice(0, 80), status: 0, stderr: expect.any(String) });
      expect(result.stdout).not.toMatch(/INTERNAL_ERROR|Argument list too long/);
    }
  });

  it('## Tenants, API keys and erasure (with the keys it names)', async () => {
    const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'readme-tenants', ORT_INTRA_OP_THREADS: '1', API_KEYS: 'alice:alice-secret,bob:bob-secret' };
    const [api] = await Promise.all([AppProcess.start('api', env), AppProcess.start('worker', env)]).then((started) => (apps.push(...started), started));
    for (const block of bashBlocks(readme, '## Tenants, API keys and erasure')) {
      const result = run(block, api);
      expect({ status: result.status, stderr: result.stderr.slice(-500) }).toEqual({ status: 0, stderr: expect.any(String) });
      // bob's look at alice's image is the 404 the README promises; alice's erasure answers with what went.
      expect(result.stdout).toContain('"code":"NOT_FOUND"');
      expect(result.stdout).toContain('"removedBytes":true');
    }
  });
});
