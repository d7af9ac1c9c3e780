import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, freePortRange, waitFor } from './harness.js';

describe('dynamo local (npm start)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dynamo-local-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('starts a working 3-node cluster, prints its endpoints and stops cleanly on SIGINT', {
    timeout: 45_000,
  }, async () => {
    // dynamo local uses consecutive ports from each base: three http ports, then three peer ports.
    const httpPort = await freePortRange(6);
    const peerPort = httpPort + 3;
    const args = [
      CLI,
      'local',
      '--data-dir',
      dataDir,
      '--http-port',
      String(httpPort),
      '--peer-port',
      String(peerPort),
    ];
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (b) => {
      out += b;
    });
    proc.stderr.on('data', (b) => {
      out += b;
    });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      await waitFor(
        'cluster ready',
        async () => out.includes('cluster ready') || proc.exitCode !== null,
        20_000,
      );
      expect(proc.exitCode, `dynamo local exited early:\n${out}`).toBeNull();
      const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${httpPort + i}`);
      for (const url of urls) expect(out).toContain(url);

      const w = await fetch(`${urls[0]}/buckets/demo/keys/greeting`, { method: 'PUT', body: 'hello' });
      expect(w.status).toBe(204);
      for (const url of urls)
        expect(await (await fetch(`${url}/buckets/demo/keys/greeting`)).text()).toBe('hello');
      expect(readdirSync(dataDir).sort()).toEqual(['n1', 'n2', 'n3']);
    } finally {
      proc.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${httpPort}/health`)).rejects.toThrow();
  });
});
