import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asTenantId } from '@app/contracts';
import { FileContentStore } from '@app/storage/file-content-store';
import { stageImage, StagedImageWriter } from './staged-image';

describe('StagedImageWriter', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'staged-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('an upload refused while its writes are still in flight is discarded without an unhandled stream error (it ended the API)', async () => {
    const store = new FileContentStore(dir);
    const tenant = asTenantId('alice');
    const uncaught: Error[] = [];
    const onUncaught = (error: Error) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      for (let round = 0; round < 50; round++) {
        const writer = await StagedImageWriter.open(store, tenant, 1024 * 1024);
        // Writes the disk has not finished yet, then the refusal destroys the stream under them.
        for (let i = 0; i < 4; i++) void writer.write(Buffer.alloc(64 * 1024, i)).catch(() => undefined);
        await writer.discard();
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(uncaught).toEqual([]);
    expect(readdirSync(join(dir, 'alice', '.incoming'))).toEqual([]);
  });

  it('stages an image and refuses one past the limit, leaving no file', async () => {
    const store = new FileContentStore(dir);
    const tenant = asTenantId('alice');
    const staged = await stageImage(store, tenant, [Buffer.from('abc'), Buffer.from('def')], 10);
    expect(staged.bytes).toBe(6);
    await expect(stageImage(store, tenant, [Buffer.alloc(8), Buffer.alloc(8)], 10)).rejects.toThrow(/larger than the 10-byte limit/);
    expect(readdirSync(join(dir, 'alice', '.incoming'))).toEqual([staged.path.split('/').pop()]);
  });
});
