import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (USER_HZ; 100 on Linux unless told otherwise). */
const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time (user + system, all threads) a process has used so far, in ms; 10 ms resolution. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}

/** VmRSS and VmHWM (peak RSS since start) of a process, in bytes. */
export function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** CPU ms each process used between construction and per(), divided by `requests`. */
export class CpuMeter {
  private readonly start: Record<string, number>;

  constructor(private readonly pids: Record<string, number>) {
    this.start = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, name === 'self' ? selfCpuMs() : cpuMs(pid)]));
  }

  per(requests: number): Record<string, number> {
    return Object.fromEntries(Object.entries(this.pids).map(([name, pid]) => [name, ((name === 'self' ? selfCpuMs() : cpuMs(pid)) - this.start[name]) / requests]));
  }
}

/** This process's CPU time (every thread: the in-process reference runs ONNX Runtime and libvips threads here), in ms. */
export function selfCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}
