/**
 * System tools the test suites need (prometheus, ip, faketime), installed by the project's own scripts
 * on first use, so that `npm test` alone works on a fresh machine (installing needs root there).
 */
import { spawnSync } from 'node:child_process';
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
