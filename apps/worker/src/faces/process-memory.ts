import { readFileSync } from 'node:fs';

/** Resident memory of this process in bytes, split as Linux accounts it (/proc/self/status). */
export interface ResidentMemory {
  /** RssAnon: private pages (heap, native allocations): this process's alone. */
  private: number;
  /**
   * RssFile: file-backed pages mapped into this process (code, and memory-mapped face-index snapshots).
   * The page cache holds one copy per host for every process that maps the same file, and the kernel may
   * drop and re-read them under memory pressure; counted here in full all the same.
   */
  fileBacked: number;
}

/** Reads /proc/self/status; off Linux, all of process.memoryUsage().rss as private. */
export function residentMemory(): ResidentMemory {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const memory = { private: kib('RssAnon'), fileBacked: kib('RssFile') };
    if (Number.isFinite(memory.private) && Number.isFinite(memory.fileBacked)) return memory;
  } catch {
    // not Linux
  }
  return { private: process.memoryUsage().rss, fileBacked: 0 };
}
