import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusteredFaces, DIMENSIONS } from '../../../../bench/face-identities';
import { CompressedFaceIndex } from './compressed-face-index';
import { loadFaissBinding } from './faiss-binding';
import type { FaceLogEntry } from '@app/storage';
import { buildExact, catchUp, needsExactBuild, PQ_REBUILD_SHARE } from './settled-snapshot';
import { TenantFaces } from './tenant-faces';

const withBinding = CompressedFaceIndex.available || process.env.CI === 'true' ? describe : describe.skip;

withBinding('FacePqIndex binding under hostile use (red team)', () => {
  const set = clusteredFaces(600, 10, 4);
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'iiq-pq-rt-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const exactIndex = async (count: number) => {
    const index = CompressedFaceIndex.create(DIMENSIONS);
    await index.addExact(
      Array.from({ length: count }, (_, i) => i + 1),
      set.vectors.subarray(0, count * DIMENSIONS),
    );
    return index;
  };

  it('release() while a save runs on the thread pool does not throw (a replaced view is released from a timer): the memory goes when the save ends', async () => {
    const index = await exactIndex(300);
    const saving = index.save(join(dir, 'while-release.faiss'));
    expect(() => index.release()).not.toThrow();
    await saving;
    expect(index.size).toBe(0);
    expect(() => index.searchAbove(set.vectors.subarray(0, DIMENSIONS), 0.5, Infinity, 16)).toThrow(/release/);
  });

  it("a TenantFaces view whose PQ base is being copied can be released (FaceIndex's RELEASE_AFTER_SWAP_MS timer) without an uncaught exception", async () => {
    const base = await exactIndex(300);
    const faces = TenantFaces.fromSnapshot(base, { path: '', indexedUpTo: 300, appliedUpTo: 300, sentinels: 0, format: 'faiss', pqLinked: 0 });
    const copying = base.copy(join(dir, 'copy.faiss'));
    expect(() => faces.release()).not.toThrow();
    (await copying).release();
  });

  it('the native release() after a save frees the index even when release was asked for during it (stats empty)', async () => {
    const native = new (loadFaissBinding()!.FacePqIndex)(DIMENSIONS, 16, 40);
    await native.addExact(Float64Array.from([1, 2, 3]), set.vectors.slice(0, 3 * DIMENSIONS));
    const saving = native.save(join(dir, 'native.faiss'));
    native.release();
    expect(() => native.has(1)).toThrow(/release/);
    await saving;
    expect(native.stats()).toEqual({});
  });

  it('remove() scrubs every node of a sequence number, also one added twice', async () => {
    const native = new (loadFaissBinding()!.FacePqIndex)(DIMENSIONS, 16, 40);
    await native.addExact(Float64Array.from([5, 6]), set.vectors.slice(0, 2 * DIMENSIONS));
    await native.addExact(Float64Array.from([5]), set.vectors.slice(0, DIMENSIONS));
    expect(native.remove(Float64Array.from([5]))).toBe(1);
    expect(native.has(5)).toBe(false);
    const found = native.search(set.vectors.slice(0, DIMENSIONS), 3, 16);
    expect(Array.from(found.labels)).not.toContain(5);
    native.release();
  });

  it('asks for an exact build once removed faces (scrubbed nodes kept in the graph, copied into every later snapshot) pass PQ_REBUILD_SHARE of the base', async () => {
    const base = await exactIndex(400);
    await base.compress();
    try {
      const live = (n: number) => n; // readability
      const file = { path: '', indexedUpTo: 400, appliedUpTo: 400, sentinels: 0, format: 'faiss' as const, pqLinked: 0 };
      expect(needsExactBuild(TenantFaces.fromSnapshot(base, file))).toBe(false);
      // A shrinking tenant: 60 % of its faces erased, nothing added. The copies keep every scrubbed node (random
      // codes the search still walks through) and never rebuild, however many are removed.
      base.remove(Array.from({ length: 240 }, (_, i) => i + 1));
      expect(live(base.size)).toBe(160);
      expect(240).toBeGreaterThan(PQ_REBUILD_SHARE * 160);
      expect(needsExactBuild(TenantFaces.fromSnapshot(base, file))).toBe(true);
    } finally {
      base.release();
    }
  });

  it('buildExact + catchUp over pages of 3 entries (every boundary): erasures during and between catch-ups, adds past coveredUpTo; each live face once, no erased one', async () => {
    const vectors = clusteredFaces(400, 10, 12).vectors;
    const entries: FaceLogEntry[] = [];
    let head = 0;
    const add = () => {
      const row = head;
      entries.push({ op: 'add', seq: ++head, faceId: `f${row}`, imageHash: `i${row}`, embedding: vectors.slice(row * DIMENSIONS, (row + 1) * DIMENSIONS) });
    };
    const erase = (seqs: number[]) => {
      for (const seq of seqs) entries.splice(entries.findIndex((e) => e.seq === seq), 1);
      entries.push({ op: 'del', seq: ++head, removedSeqs: seqs });
    };
    const read = async (after: number) => entries.filter((e) => e.seq > after).slice(0, 3);
    for (let i = 0; i < 300; i++) add();
    erase([7]); // 301, before the build: its entry is gone
    const build = (await buildExact({ dimensions: DIMENSIONS, indexedUpTo: 280, lastSeq: 301 }, read))!;
    try {
      erase([5, 290]); // 302: one built face, one still in the tail
      for (let i = 0; i < 8; i++) add(); // 303..310
      const view = (indexedUpTo: number) => ({ dimensions: DIMENSIONS, indexedUpTo, lastSeq: head }) as TenantFaces;
      await catchUp(build, view(305), read);
      erase([304, 1]); // 311
      add(); // 312
      await catchUp(build, view(312), read);
      await catchUp(build, view(312), read); // again, nothing new: harmless
      const erased = new Set([1, 5, 7, 290, 304]);
      const live = entries.filter((e) => e.op === 'add').map((e) => e.seq);
      expect(live.filter((seq) => erased.has(seq) || seq === 301 || seq === 302 || seq === 311)).toEqual([]);
      for (const seq of live) expect([seq, build.index.has(seq)]).toEqual([seq, true]);
      for (const seq of erased) expect([seq, build.index.has(seq)]).toEqual([seq, false]);
      expect(build.index.size).toBe(live.length);
      expect(build).toMatchObject({ coveredUpTo: 312, appliedUpTo: 312 });
    } finally {
      build.index.release();
    }
  });
});

withBinding('FacePqIndex.load on a file whose sizes were corrupted (red team 2)', () => {
  const set = clusteredFaces(300, 10, 5);
  let dir: string;
  let saved: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'iiq-pq-rt2-'));
    const index = CompressedFaceIndex.create(DIMENSIONS);
    await index.addExact(
      Array.from({ length: 300 }, (_, i) => i + 1),
      set.vectors,
    );
    await index.compress();
    await index.save(join(dir, 'good.faiss'));
    index.release();
    saved = readFileSync(join(dir, 'good.faiss'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Loads `bytes` in a process of its own; says whether it was refused and the child's peak resident memory (MB).
   * The peak is VmHWM of /proc/self/status (this process's own memory map), not getrusage's maxRSS: Linux keeps
   * maxRSS across fork + exec, so a child of a 1.4 GB Jest worker reported 1.4 GB (CI, stop 30).
   */
  const loadApart = (name: string, bytes: Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    const script = `
      const { CompressedFaceIndex } = require(${JSON.stringify(require.resolve('./compressed-face-index'))});
      const peakMb = () => Number(/VmHWM:\\s+(\\d+) kB/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
      CompressedFaceIndex.load(${JSON.stringify(path)}, ${DIMENSIONS}).then(
        (loaded) => { loaded.release(); console.log(JSON.stringify({ refused: '', peakMb: peakMb() })); },
        (error) => console.log(JSON.stringify({ refused: error.message, peakMb: peakMb() })));`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect({ status: run.status, signal: run.signal }).toEqual({ status: 0, signal: null });
    return JSON.parse(run.stdout) as { refused: string; peakMb: number };
  };

  it("refuses a file whose graph's upper_beam was corrupted: a search sized a buffer by it (huge: bad_alloc inside FAISS's OpenMP region, an abort; 0: a segmentation fault)", () => {
    for (const [name, beam] of [
      ['beam-huge.faiss', 0x40000000],
      ['beam-zero.faiss', 0],
    ] as const) {
      const bytes = Buffer.from(saved);
      // The graph ends with 5 int32 (entry point, max level, ef construction, ef search, upper beam) before "IxPq".
      const beamAt = bytes.indexOf('IxPq', bytes.indexOf('IHNp')) - 4;
      expect(bytes.readInt32LE(beamAt)).toBe(1);
      bytes.writeInt32LE(beam, beamAt);
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const script = `
        const { CompressedFaceIndex } = require(${JSON.stringify(require.resolve('./compressed-face-index'))});
        CompressedFaceIndex.load(${JSON.stringify(path)}, ${DIMENSIONS}).then((loaded) => {
          loaded.searchAbove(new Float32Array(${DIMENSIONS}).fill(1 / Math.sqrt(${DIMENSIONS})), -1, Infinity, 64);
          console.log('searched');
        }, (error) => console.log('refused: ' + error.message));`;
      // Address space capped (3 GB), so a huge allocation fails at once instead of taking the machine's memory.
      const run = spawnSync('/bin/sh', ['-c', `ulimit -v 3000000; exec "${process.execPath}" -e "$0"`, script], { encoding: 'utf8', timeout: 60_000 });
      expect({ name, status: run.status, signal: run.signal }).toEqual({ name, status: 0, signal: null });
      expect(run.stdout).toMatch(/refused: .* is corrupt: its graph's upper beam/);
    }
  });

  it("refuses a file whose graph table length was corrupted (one size field) before FAISS allocates it: it read the length and zero-filled that much memory (up to 2^40 entries: tens of GB, an OOM kill at every start)", () => {
    const bytes = Buffer.from(saved);
    // IxMp header (37 bytes), IHNp header (37), then the graph: assign_probas (count + doubles),
    // cum_nneighbor_per_level (count + int32), levels (count + int32), ...
    let at = bytes.indexOf('IHNp') + 37;
    at += 8 + 8 * Number(bytes.readBigUInt64LE(at));
    at += 8 + 4 * Number(bytes.readBigUInt64LE(at));
    expect(Number(bytes.readBigUInt64LE(at))).toBe(300); // levels: one per face
    bytes.writeBigUInt64LE(2n ** 28n, at); // 1 GiB of int32
    const found = loadApart('levels.faiss', bytes);
    expect(found.refused).toMatch(/levels\.faiss is corrupt/);
    expect(found.peakMb).toBeLessThan(400);
  });

  it('refuses a file whose product quantizer says 20 bits a code before FAISS sizes its codebooks from it (128 × 2^20 floats: 512 MB)', () => {
    const bytes = Buffer.from(saved);
    const pq = bytes.indexOf('IxPq', bytes.indexOf('IHNp')) + 37; // then d, M, nbits (8 bytes each)
    expect(Number(bytes.readBigUInt64LE(pq + 16))).toBe(8);
    bytes.writeBigUInt64LE(20n, pq + 16);
    const found = loadApart('nbits.faiss', bytes);
    expect(found.refused).toMatch(/nbits\.faiss is corrupt/);
    expect(found.peakMb).toBeLessThan(400);
  });
});
