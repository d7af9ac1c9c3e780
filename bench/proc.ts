/**
 * What the benchmarks read of a node process from Linux's /proc: memory (anonymous and total resident
 * set), CPU time (user + system, every thread), the processes a launcher started, and how long ago a
 * process started. Off Linux (no /proc) every reader answers undefined and the benches leave the figure
 * out.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ: 100 on every Linux architecture in use). */
const TICKS_PER_SECOND = 100;

export interface ProcessMemory {
  /** RssAnon: anonymous resident memory (JS heap, malloc, thread stacks): what a node costs in RAM. */
  anonBytes: number;
  /** VmRSS: everything resident, including file pages mapped in (LevelDB tables, the binary). */
  rssBytes: number;
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** RssAnon and VmRSS of pid, or undefined when it is gone (or there is no /proc). */
export function processMemory(pid: number): ProcessMemory | undefined {
  const status = read(`/proc/${pid}/status`);
  if (status === undefined) return undefined;
  const kib = (field: string) => {
    const m = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const anonBytes = kib('RssAnon');
  const rssBytes = kib('VmRSS');
  return anonBytes === undefined || rssBytes === undefined ? undefined : { anonBytes, rssBytes };
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU time pid has used so far, user + system over all its threads, in microseconds. */
export function processCpuMicros(pid: number): number | undefined {
  const f = statFields(pid);
  // After the name: state(3) ppid(4) ... utime(14) stime(15), so indices 11 and 12 here.
  if (!f) return undefined;
  return ((Number(f[11]) + Number(f[12])) * 1e6) / TICKS_PER_SECOND;
}

/** Seconds since pid started (from its start time in ticks since boot and /proc/uptime). */
export function processAgeSeconds(pid: number): number | undefined {
  const f = statFields(pid);
  const uptime = read('/proc/uptime');
  if (!f || uptime === undefined) return undefined;
  return Number(uptime.split(' ')[0]) - Number(f[19]) / TICKS_PER_SECOND;
}

/** The processes whose parent is pid. */
export function childPids(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const children: number[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && Number(f[1]) === pid) children.push(Number(name));
  }
  return children;
}

/** The value of a `--flag value` on pid's command line, or undefined. */
export function commandLineFlag(pid: number, flag: string): string | undefined {
  const argv = read(`/proc/${pid}/cmdline`)?.split('\0');
  if (!argv) return undefined;
  const at = argv.indexOf(flag);
  return at >= 0 ? argv[at + 1] : undefined;
}
