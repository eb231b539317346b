import { createHash } from 'node:crypto';

/**
 * TEST ONLY. Given TEST_CRASH_ON_IMAGE_SHA256 (set by the poison-image fault suite, never in a deployment), returns a
 * check that SIGKILLs this process when handed bytes with that sha256: what a native crash in a decoder or in ONNX
 * Runtime does to a worker (no JavaScript runs after it, no job is failed or released). Without the variable it
 * returns undefined, and no byte is hashed.
 */
export function testCrashHook(poisonSha256: string | undefined, log: (hash: string) => void): ((bytes: Buffer) => void) | undefined {
  if (!poisonSha256) return undefined;
  return (bytes) => {
    const hash = createHash('sha256').update(bytes).digest('hex');
    if (hash !== poisonSha256) return;
    log(hash);
    process.kill(process.pid, 'SIGKILL');
  };
}
