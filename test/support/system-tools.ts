/**
 * System tools the test suites need (prometheus, ip, faketime), installed by the project's own scripts
 * on first use, so that `npm test` alone works on a fresh machine (installing needs root there).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';

const HACK = resolve(import.meta.dirname, '../../hack');

function present(binary: string): boolean {
  const r = spawnSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' });
  return r.status === 0;
}

/**
 * Makes sure every binary is on PATH, running hack/<script> once when one is missing; throws (a test
 * fails, never skips) with the script's output when it cannot.
 */
export function ensureTools(binaries: string[], script: string): void {
  if (binaries.every(present)) return;
  const r = spawnSync('bash', [resolve(HACK, script)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const missing = binaries.filter((b) => !present(b));
  if (r.status !== 0 || missing.length > 0) {
    throw new Error(
      `${missing.join(', ') || binaries.join(', ')} missing and hack/${script} could not install it ` +
        `(exit ${r.status}; it needs root): ${r.stderr || r.stdout}`,
    );
  }
}

/** Debian's libfaketime (hack/install-test-tools.sh installs it). */
export function libfaketime(): string {
  ensureTools(['faketime'], 'install-test-tools.sh');
  const dirs = ['/usr/lib/faketime', ...readdirSync('/usr/lib').map((d) => `/usr/lib/${d}/faketime`)];
  const found = dirs.map((d) => `${d}/libfaketime.so.1`).find((f) => existsSync(f));
  if (!found) throw new Error('libfaketime not found: run bash hack/install-test-tools.sh (as root)');
  return found;
}

/**
 * A command prefix that runs a process with its wall clock (Date.now) set back by seconds: libfaketime
 * preloaded by env, which execs (the faketime wrapper forks, and a kill would miss the process). Timers
 * keep the real monotonic clock.
 */
export function clockSetBack(seconds: number): string[] {
  return ['env', `LD_PRELOAD=${libfaketime()}`, `FAKETIME=-${seconds}s`, 'FAKETIME_DONT_FAKE_MONOTONIC=1'];
}
