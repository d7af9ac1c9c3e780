import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch, type RequestInit } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, freePortRange, waitFor } from './harness.js';

/** `dynamo local` on dataDir, running until stop(); resolves once it prints that the cluster is ready. */
async function runLocal(dataDir: string, extra: string[] = []) {
  // dynamo local uses consecutive ports from each base: three http ports, then three peer ports.
  const httpPort = await freePortRange(6);
  const args = [CLI, 'local', '--data-dir', dataDir, '--http-port', String(httpPort)];
  args.push('--peer-port', String(httpPort + 3), ...extra);
  const proc: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (b) => {
    out += b;
  });
  proc.stderr?.on('data', (b) => {
    out += b;
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const stop = async () => {
    proc.kill('SIGINT');
    return exited;
  };
  try {
    await waitFor(
      'cluster ready',
      async () => out.includes('cluster ready') || proc.exitCode !== null,
      30_000,
    );
    expect(proc.exitCode, `dynamo local exited early:\n${out}`).toBeNull();
  } catch (err) {
    await stop();
    throw err;
  }
  // TLS unless --insecure: the local CA is what a user exports as DYNAMO_CA.
  const ca = join(dataDir, 'tls', 'ca.crt');
  const tls = !extra.includes('--insecure');
  const scheme = tls ? 'https' : 'http';
  const urls = [0, 1, 2].map((i) => `${scheme}://127.0.0.1:${httpPort + i}`);
  // The admin token dynamo local made (what a user exports as DYNAMO_TOKEN).
  const token = readFileSync(join(dataDir, 'tokens'), 'utf8').match(/^admin (\S+)$/m)![1]!;
  const auth = { authorization: `Bearer ${token}` };
  const dispatcher = tls ? new Agent({ connect: { ca: readFileSync(ca) } }) : undefined;
  /** fetch with the admin token, trusting the local CA. */
  const call = (url: string, init: RequestInit = {}) =>
    fetch(url, {
      ...init,
      headers: { ...auth, ...(init.headers as Record<string, string>) },
      ...(dispatcher ? { dispatcher } : {}),
    });
  /** A node's metric, read over its (https) endpoint. */
  const metric = async (url: string, name: string) => {
    const text = await (await call(`${url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line === undefined ? undefined : Number(line.split(' ').at(-1));
  };
  return { urls, out: () => out, stop, call, token, ca, metric, httpPort };
}

const run = promisify(execFile);

describe('dynamo local (npm start)', () => {
  const root = mkdtempSync(join(tmpdir(), 'dynamo-local-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('starts a working 3-node cluster, prints its endpoints and stops cleanly on SIGINT', {
    timeout: 45_000,
  }, async () => {
    const dataDir = join(root, 'a');
    const local = await runLocal(dataDir);
    try {
      for (const url of local.urls) expect(local.out()).toContain(url);
      // Secure by default: TLS (plain HTTP gets no answer), no token no access; the printed admin token works.
      await expect(fetch(`http://127.0.0.1:${local.httpPort}/health`)).rejects.toThrow();
      const untrusted = await fetch(`${local.urls[0]}/health`).catch((err: Error) => err);
      expect(untrusted).toBeInstanceOf(Error); // a client that does not trust the local CA
      const open = await local.call(`${local.urls[0]}/buckets/demo/keys/greeting`, {
        method: 'PUT',
        body: 'x',
        headers: { authorization: '' },
      });
      expect(open.status).toBe(401);
      expect(local.out()).toContain(`export DYNAMO_TOKEN=${local.token}`);
      expect(local.out()).toContain('export DYNAMO_CA=');
      const w = await local.call(`${local.urls[0]}/buckets/demo/keys/greeting`, {
        method: 'PUT',
        body: 'hello',
      });
      expect(w.status).toBe(204);
      for (const url of local.urls)
        expect(await (await local.call(`${url}/buckets/demo/keys/greeting`)).text()).toBe('hello');
      expect(readdirSync(dataDir).sort()).toEqual(['context-secret', 'n1', 'n2', 'n3', 'tls', 'tokens']);
      // The CLI, configured as printed, reads it back over HTTPS.
      const env = {
        ...process.env,
        DYNAMO_TOKEN: local.token,
        DYNAMO_CA: local.ca,
        DYNAMO_ENDPOINT: local.urls[1],
      };
      const got = await run(process.execPath, [CLI, 'get', 'demo', 'greeting'], { env });
      expect(got.stdout.trim()).toBe('hello');
      // Gossip membership: every node is a member the failure detector watches.
      const ring = (await (await local.call(`${local.urls[2]}/admin/ring`)).json()) as {
        members: Array<{ id: string; state: string }>;
      };
      expect(ring.members.map((m) => [m.id, m.state])).toEqual([
        ['n1', 'up'],
        ['n2', 'up'],
        ['n3', 'up'],
      ]);
    } finally {
      expect(await local.stop()).toBe(0);
    }
    await expect(local.call(`${local.urls[0]}/health`)).rejects.toThrow();
  });

  it('--insecure runs without TLS or tokens, and says so', { timeout: 45_000 }, async () => {
    const dataDir = join(root, 'd');
    const local = await runLocal(dataDir, ['--insecure']);
    try {
      expect(local.out()).toMatch(/--insecure: no TLS and no client tokens/);
      expect(existsSync(join(dataDir, 'tls'))).toBe(false);
      const w = await fetch(`${local.urls[0]}/buckets/demo/keys/k`, { method: 'PUT', body: 'plain' });
      expect(w.status).toBe(204);
    } finally {
      expect(await local.stop()).toBe(0);
    }
  });

  it('restarted with n1 wiped, rebuilds n1 from the others before it serves (no second cluster)', {
    timeout: 90_000,
  }, async () => {
    const dataDir = join(root, 'b');
    const first = await runLocal(dataDir);
    const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
    try {
      for (const k of keys) {
        const res = await first.call(`${first.urls[1]}/buckets/demo/keys/${k}?w=all`, {
          method: 'PUT',
          body: k,
        });
        expect(res.status).toBe(204);
      }
    } finally {
      expect(await first.stop()).toBe(0);
    }
    rmSync(join(dataDir, 'n1'), { recursive: true, force: true });
    const second = await runLocal(dataDir);
    try {
      // n=3 on 3 nodes: n1 holds every key again, streamed in before it became ready.
      expect(await second.metric(second.urls[0]!, 'dynamo_storage_keys')).toBe(keys.length);
      const ring = (await (await second.call(`${second.urls[0]}/admin/ring`)).json()) as {
        members: Array<{ id: string }>;
      };
      expect(ring.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3']);
      for (const k of keys)
        expect(await (await second.call(`${second.urls[0]}/buckets/demo/keys/${k}?r=all`)).text()).toBe(k);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });

  it('--static runs the nodes with a fixed member list', { timeout: 45_000 }, async () => {
    const local = await runLocal(join(root, 'c'), ['--static']);
    try {
      const status = (await (await local.call(`${local.urls[0]}/admin/status`)).json()) as {
        membership?: string;
      };
      const res = await local.call(`${local.urls[0]}/admin/members/n2/remove`, { method: 'POST' });
      expect(res.status, JSON.stringify(status)).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('static_membership');
    } finally {
      expect(await local.stop()).toBe(0);
    }
  });
});
