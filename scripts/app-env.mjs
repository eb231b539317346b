// The environment the apps run with outside the container image, as the image runs them (Dockerfile): shared
// by npm start (scripts/start.mjs) and npm run start:api / start:worker (scripts/run-app.mjs).
import { existsSync } from 'node:fs';

/** Debian's and the image's jemalloc (README "Memory allocator"); undefined when not installed. */
export const JEMALLOC = ['/usr/local/lib/libjemalloc.so.2', '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2'].find((path) => existsSync(path));

/**
 * Sets, where `env` does not say otherwise: V8's young generation capped (NODE_OPTIONS=--max-semi-space-size=2)
 * and jemalloc preloaded with a 1 s decay (LD_PRELOAD= turns it off). Returns `env`.
 */
export function withAppRuntime(env) {
  env.NODE_OPTIONS ??= '--max-semi-space-size=2';
  if (JEMALLOC && env.LD_PRELOAD === undefined) {
    env.LD_PRELOAD = JEMALLOC;
    env.MALLOC_CONF ??= 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0';
  }
  return env;
}
