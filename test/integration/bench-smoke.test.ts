/**
 * `npm run bench` end to end at a tiny size: it starts its own local cluster (TLS and tokens on, as
 * `npm start` makes them), the same with --insecure (--compare-insecure), and every operation must succeed. (Speed is measured by the bench itself, never here.)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const YCSB = resolve(import.meta.dirname, '../../dist/bench/ycsb.js');

describe('npm run bench', () => {
  it('runs workload a on its own local cluster, without TLS and auth, and its baseline, with no failed operation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dynamo-bench-smoke-'));
    try {
      const out = join(dir, 'result.json');
      const args = [
        YCSB,
        '--records',
        '300',
        '--operations',
        '300',
        '--workloads',
        'a',
        '--seed',
        '3',
        '--compare-insecure',
        '--out',
        out,
      ];
      await promisify(execFile)(process.execPath, args, { timeout: 120_000 });
      const result = JSON.parse(readFileSync(out, 'utf8')) as {
        cluster: { endpoints: string[] };
        insecure: { endpoints: string[] };
        security: unknown[];
      };
      expect(result.cluster.endpoints[0]).toMatch(/^https:/);
      expect(result.insecure.endpoints[0]).toMatch(/^http:/);
      expect(result.security.length).toBeGreaterThan(0);
      const errors = [...JSON.stringify(result).matchAll(/"errors":(\d+)/g)].map((m) => Number(m[1]));
      expect(errors.length).toBeGreaterThan(0);
      expect(
        errors.every((e) => e === 0),
        JSON.stringify(result).slice(0, 500),
      ).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
