/**
 * `npm run bench` end to end at a tiny size: it starts its own local cluster (TLS and tokens on, as
 * `npm start` makes them), the same with --insecure (--compare-insecure), one whose bucket is lww, and
 * every operation must succeed; each workload also ran open loop at half its peak. (Speed is measured by the bench itself, never here.)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const YCSB = resolve(import.meta.dirname, '../../dist/bench/ycsb.js');

describe('npm run bench', () => {
  it('runs workload a on its own local cluster, without TLS and auth, with lww, and its baseline, with no failed operation', async () => {
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
      await promisify(execFile)(process.execPath, args, { timeout: 180_000 });
      type Phase = { name: string; offeredOpsPerSec?: number; siblings?: { reads: number; max: number } };
      const result = JSON.parse(readFileSync(out, 'utf8')) as {
        cluster: { endpoints: string[]; phases: Phase[] };
        insecure: { endpoints: string[] };
        security: unknown[];
        lww: { bucketProps: { conflict: string }; phases: Phase[] };
      };
      expect(result.cluster.endpoints[0]).toMatch(/^https:/);
      expect(result.insecure.endpoints[0]).toMatch(/^http:/);
      expect(result.security.length).toBeGreaterThan(0);
      expect(result.lww.bucketProps.conflict).toBe('lww');
      for (const phases of [result.cluster.phases, result.lww.phases]) {
        const half = phases.find((p) => p.name === 'a@50%');
        expect(half?.offeredOpsPerSec).toBeGreaterThan(0);
        expect(phases.find((p) => p.name === 'a')?.siblings?.reads).toBeGreaterThan(0);
      }
      // Last write wins keeps one value per key: no read meets siblings.
      expect(result.lww.phases.every((p) => (p.siblings?.max ?? 1) === 1)).toBe(true);
      const errors = [...JSON.stringify(result).matchAll(/"errors":(\d+)/g)].map((m) => Number(m[1]));
      expect(errors.length).toBeGreaterThan(0);
      expect(
        errors.every((e) => e === 0),
        JSON.stringify(result).slice(0, 500),
      ).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 210_000);
});
