import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusteredFaces, DIMENSIONS, newView, Xorshift } from '../../../../bench/face-identities';
import { CompressedFaceIndex } from './compressed-face-index';
import { dotProduct } from './face-matrix';
import { saveScrubbed } from './settled-snapshot';

const FACES = 2000;
const THRESHOLD = 0.45;
const row = (vectors: Float32Array, i: number) => vectors.subarray(i * DIMENSIONS, (i + 1) * DIMENSIONS);

// CI installs libfaiss-dev (.ci/run), so there the binding is always built and this suite always runs.
const withBinding = CompressedFaceIndex.available || process.env.CI === 'true' ? describe : describe.skip;

withBinding('CompressedFaceIndex (FAISS HNSW, links on exact distances, PQ storage)', () => {
  const set = clusteredFaces(FACES, 10, 21);
  const seqs = Array.from({ length: FACES }, (_, i) => i + 1);
  let dir: string;
  let index: CompressedFaceIndex;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'iiq-pq-'));
    index = CompressedFaceIndex.create(DIMENSIONS);
    for (let start = 0; start < FACES; start += 500) await index.addExact(seqs.slice(start, start + 500), set.vectors.subarray(start * DIMENSIONS, (start + 500) * DIMENSIONS));
    await index.compress();
  }, 60_000);
  afterAll(() => {
    index?.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds on the thread pool: the event loop runs while a batch is linked, and the index refuses use meanwhile', async () => {
    const other = CompressedFaceIndex.create(DIMENSIONS);
    let turns = 0;
    let pending = true;
    const spin = () => {
      turns++;
      if (pending) setImmediate(spin);
    };
    // All 2,000 faces in one call (about a second of linking): long enough that the event loop turns while it
    // runs even on a loaded machine (400 faces were once linked before the loop's second turn there).
    const adding = other.addExact(seqs, set.vectors);
    try {
      setImmediate(spin);
      expect(() => other.searchAbove(row(set.vectors, 0), 0.5, Infinity, 16)).toThrow(/busy/);
      await adding;
      pending = false;
      expect(turns).toBeGreaterThan(1);
      expect(other.size).toBe(FACES);
    } finally {
      pending = false;
      await adding.catch(() => undefined);
      other.release();
    }
  });

  it('offers every exact match above the threshold as a candidate (PQ similarity within the margin of the exact one)', () => {
    const random = new Xorshift(5);
    let expected = 0;
    let offered = 0;
    for (let q = 0; q < 60; q++) {
      const query = newView(set, Math.floor(random.next() * (FACES / 10)), random);
      const candidates = new Map(index.searchAbove(query, THRESHOLD - index.rerankMargin, Infinity, 64).candidates.map((c) => [c.seq, c.similarity]));
      for (let i = 0; i < FACES; i++) {
        const exact = dotProduct(set.vectors, i * DIMENSIONS, query, DIMENSIONS);
        if (exact < THRESHOLD) continue;
        expected++;
        const similarity = candidates.get(i + 1);
        if (similarity === undefined) continue;
        offered++;
        expect(Math.abs(similarity - exact)).toBeLessThan(index.rerankMargin);
      }
    }
    expect(expected).toBeGreaterThan(100);
    // HNSW is approximate; on this toy set the exact graph reaches (nearly) all of them.
    expect(offered / expected).toBeGreaterThanOrEqual(0.98);
  });

  it('removes a face for good: never offered, its code overwritten, and so in a saved and reloaded copy; faces added later are found', async () => {
    const copy = await index.copy(join(dir, 'copy.faiss'));
    try {
      const victim = 137;
      const face = row(set.vectors, victim - 1);
      const before = copy.nearestNodes(face, 64).find((n) => n.label === victim);
      expect(before?.similarity).toBeGreaterThan(0.9);
      expect(copy.remove([victim, 999_999])).toBe(1);
      expect(copy.has(victim)).toBe(false);
      expect(copy.has(victim + 1)).toBe(true);
      expect(copy.size).toBe(FACES - 1);
      expect(copy.searchAbove(face, 0.3, Infinity, 64).candidates.map((c) => c.seq)).not.toContain(victim);
      const scrubbed = copy.nearestNodes(face, FACES).find((n) => n.label === -1 - victim);
      expect(scrubbed === undefined || scrubbed.similarity < 0.6).toBe(true);

      const later = newView(set, 3, new Xorshift(77));
      await copy.add([FACES + 10], later);
      const path = join(dir, 'saved.faiss');
      // A save only reads: searches go on beside it, changes are refused until it is done.
      const saving = copy.save(path);
      expect(copy.searchAbove(later, 0.9, Infinity, 16).candidates[0]?.seq).toBe(FACES + 10);
      expect(() => copy.remove([1])).toThrow(/busy/);
      await saving;
      // Per face: 32-byte code, level-0 links (32 × 4 bytes), label, level; plus the codebooks (256 × 128 floats) once.
      expect((statSync(path).size - 256 * DIMENSIONS * 4) / FACES).toBeLessThan(200);

      const loaded = await CompressedFaceIndex.load(path, DIMENSIONS);
      try {
        expect(loaded.size).toBe(FACES);
        expect(loaded.has(victim)).toBe(false);
        expect(loaded.searchAbove(face, 0.3, Infinity, 64).candidates.map((c) => c.seq)).not.toContain(victim);
        expect(loaded.searchAbove(later, 0.9, Infinity, 16).candidates[0]?.seq).toBe(FACES + 10);
        // Only faces numbered below beforeSeq.
        expect(loaded.searchAbove(later, 0.9, FACES + 10, 16).candidates.map((c) => c.seq)).not.toContain(FACES + 10);
      } finally {
        loaded.release();
      }
    } finally {
      copy.release();
    }
    expect(index.has(137)).toBe(true); // the copy was separate
  });

  it("clears a removed face's graph links, out and in, before a snapshot is saved: the file keeps none, and live faces are still found", async () => {
    const copy = await index.copy(join(dir, 'unlink.faiss'));
    try {
      // Every 10th face removed, and the node searches start from.
      const entry = copy.entryLabel;
      const removed = seqs.filter((seq) => seq % 10 === 0 || seq === entry);
      expect(copy.remove(removed)).toBe(removed.length);
      expect(await copy.unlinkRemoved()).toBeGreaterThan(removed.length * 16);
      expect(copy.entryLabel).toBeGreaterThan(0); // a live face took its place
      expect(await copy.unlinkRemoved()).toBe(0);
      const path = join(dir, 'unlinked.faiss');
      await saveScrubbed(copy, path);
      const loaded = await CompressedFaceIndex.load(path, DIMENSIONS);
      try {
        expect(await loaded.unlinkRemoved()).toBe(0); // nothing in the file links to or from a removed face
        const live = seqs.filter((seq) => !removed.includes(seq));
        let found = 0;
        for (const seq of live.slice(0, 400)) found += loaded.searchAbove(row(set.vectors, seq - 1), 0.8, Infinity, 64).candidates.some((c) => c.seq === seq) ? 1 : 0;
        expect(found / 400).toBeGreaterThanOrEqual(0.99);
        for (const seq of removed.slice(0, 50)) expect(loaded.searchAbove(row(set.vectors, seq - 1), 0.3, Infinity, 64).candidates.map((c) => c.seq)).not.toContain(seq);
      } finally {
        loaded.release();
      }
    } finally {
      copy.release();
    }
  });

  it('leaves no live face unreachable after unlinkRemoved, also when nearly every face was removed (their routes gone)', async () => {
    const copy = await index.copy(join(dir, 'unlink-most.faiss'));
    try {
      const entry = copy.entryLabel;
      // 10 faces stay (the entry point not among them): every route between them ran through removed faces.
      const live = seqs.filter((seq) => seq % 200 === 17 && seq !== entry);
      const removed = seqs.filter((seq) => !live.includes(seq));
      expect(copy.remove(removed)).toBe(removed.length);
      await copy.unlinkRemoved();
      expect(live).toContain(copy.entryLabel);
      const path = join(dir, 'unlinked-most.faiss');
      await saveScrubbed(copy, path);
      const loaded = await CompressedFaceIndex.load(path, DIMENSIONS);
      try {
        expect(await loaded.unlinkRemoved()).toBe(0);
        for (const seq of live) {
          // A search that asks for every node reaches every live face, and nothing removed comes back.
          const labels = loaded.nearestNodes(row(set.vectors, seq - 1), FACES).map((node) => node.label);
          expect(live.filter((other) => !labels.includes(other))).toEqual([]);
          expect(loaded.searchAbove(row(set.vectors, seq - 1), 0.8, Infinity, 64).candidates.map((c) => c.seq)).toEqual([seq]);
        }
      } finally {
        loaded.release();
      }
    } finally {
      copy.release();
    }
  });

  it('refuses a FAISS-readable file whose graph links point outside the index (bits flipped on disk), where a search would read far outside it and kill the worker', async () => {
    const path = join(dir, 'corrupt.faiss');
    await index.save(path);
    const bytes = readFileSync(path);
    // FAISS writes the graph's neighbour ids, then 5 int32 (entry point, max level, ef construction, ef search,
    // upper beam), then the storage ("IxPq"): the last 400 neighbour ids are overwritten with a huge id.
    const storageAt = bytes.indexOf('IxPq', bytes.indexOf('IHNp'));
    expect(storageAt).toBeGreaterThan(0);
    for (let k = 1; k <= 400; k++) bytes.writeInt32LE(0x7ffffff0, storageAt - 20 - 4 * k);
    writeFileSync(path, bytes);
    // In a process of its own: without the check, the search below is a segmentation fault.
    const script = `
      const { CompressedFaceIndex } = require(${JSON.stringify(require.resolve('./compressed-face-index'))});
      CompressedFaceIndex.load(${JSON.stringify(path)}, ${DIMENSIONS}).then((loaded) => {
        const query = new Float32Array(${DIMENSIONS}).fill(1 / Math.sqrt(${DIMENSIONS}));
        for (let i = 0; i < 50; i++) loaded.searchAbove(query, -1, Infinity, 512);
        console.log('searched');
      }, (error) => console.log('refused: ' + error.message));`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: run.status, signal: run.signal }).toEqual({ status: 0, signal: null });
    expect(run.stdout).toMatch(/refused: .*corrupt\.faiss is corrupt: a link points outside the index/);
  });

  it('refuses a file that is not a face index, and any use after release', async () => {
    const bogus = join(dir, 'bogus.faiss');
    writeFileSync(bogus, 'not an index');
    await expect(CompressedFaceIndex.load(bogus, DIMENSIONS)).rejects.toThrow();
    const gone = await index.copy(join(dir, 'gone.faiss'));
    gone.release();
    expect(() => gone.searchAbove(row(set.vectors, 0), 0.5, Infinity, 16)).toThrow(/release/);
  });
});
