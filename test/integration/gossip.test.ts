import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, freePort, metric, TestCluster, waitFor } from './harness.js';

interface RingView {
  members: Array<{ id: string; state: string; http: string | null }>;
}

const ring = async (url: string) => (await (await fetch(`${url}/admin/ring`)).json()) as RingView;
const states = async (url: string) =>
  Object.fromEntries((await ring(url)).members.map((m) => [m.id, m.state])) as Record<string, string>;

const FAST = ['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'];

/** Waits until node 1 sees every member up. */
const allUp = (c: TestCluster) =>
  waitFor('all up', async () => Object.values(await states(c.url(0))).every((s) => s === 'up'), 30_000);

describe('gossip membership', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('joins nodes through one seed and converges on the same ring everywhere', async () => {
    c = await TestCluster.start(3, FAST, { gossip: true });
    for (let i = 0; i < 3; i++) {
      await waitFor(
        `n${i + 1} sees all three up`,
        async () => {
          const s = await states(c!.url(i));
          return s.n1 === 'up' && s.n2 === 'up' && s.n3 === 'up';
        },
        30_000,
      );
    }
    // The ring view carries every member's HTTP URL, learned through gossip.
    expect((await ring(c.url(2))).members.map((m) => m.http).sort()).toEqual(
      c.nodes.map((n) => n.url).sort(),
    );
    const w = await fetch(`${c.url(2)}/buckets/g/keys/k?w=all`, { method: 'PUT', body: 'everywhere' });
    expect(w.status).toBe(204);
    expect(await (await fetch(`${c.url(0)}/buckets/g/keys/k?r=all`)).text()).toBe('everywhere');
  });

  it('refuses a node whose seeds belong to a cluster of another name, and the cluster does not change', async () => {
    c = await TestCluster.start(2, FAST, { gossip: true });
    const dir = mkdtempSync(join(tmpdir(), 'dynamo-stranger-'));
    try {
      const [http, peer] = [await freePort(), await freePort()];
      const stranger = spawn(
        process.execPath,
        [
          CLI,
          'node',
          '--node-id',
          'stranger',
          '--cluster-name',
          'other',
          '--data-dir',
          dir,
          '--seeds',
          `127.0.0.1:${c.nodes[0]!.peerPort}`,
          '--advertise',
          `127.0.0.1:${peer}`,
          '--http-host',
          '127.0.0.1',
          '--http-port',
          String(http),
          '--peer-host',
          '127.0.0.1',
          '--peer-port',
          String(peer),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      stranger.stdout.on('data', (b) => (output += b));
      stranger.stderr.on('data', (b) => (output += b));
      const code = await new Promise<number | null>((r) => stranger.once('exit', r));
      expect(code).not.toBe(0);
      expect(output).toMatch(/another cluster/);
      expect(output).toMatch(/dynamo/); // names the cluster it found
      expect(Object.keys(await states(c.url(0))).sort()).toEqual(['n1', 'n2']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('marks a SIGSTOPped node down, routes around it with hints, and brings it back up caught up', async () => {
    c = await TestCluster.start(3, FAST, { gossip: true });
    await allUp(c);
    const paused = c.nodes[2]!.proc!;
    paused.kill('SIGSTOP');
    try {
      const stopped = Date.now();
      await waitFor('n3 marked down', async () => (await states(c!.url(0))).n3 === 'down', 20_000);
      const detectSeconds = (Date.now() - stopped) / 1000;
      expect(await metric(c.url(0), /^dynamo_member_phi\{.*peer="n3"/)).toBeGreaterThanOrEqual(8);
      expect(await metric(c.url(0), /^dynamo_members\{.*state="down"/)).toBe(1);

      // Writes go on without waiting for the paused node; what it misses becomes hints.
      const started = Date.now();
      for (let i = 0; i < 50; i++) {
        expect(
          (await fetch(`${c.url(0)}/buckets/g/keys/p${i}?w=2`, { method: 'PUT', body: `p${i}` })).status,
        ).toBe(204);
      }
      expect(Date.now() - started).toBeLessThan(5000);
      await waitFor(
        '50 hints stored',
        async () => (await metric(c!.url(0), /^dynamo_hints_pending\{.*target="n3"/)) === 50,
      );

      paused.kill('SIGCONT');
      const resumed = Date.now();
      await waitFor('n3 up again', async () => (await states(c!.url(0))).n3 === 'up', 20_000);
      await waitFor(
        'hints delivered',
        async () => (await metric(c!.url(0), /^dynamo_hints_pending\{.*target="n3"/)) === 0,
      );
      console.log(
        `gossip: SIGSTOP detected in ${detectSeconds.toFixed(1)} s; up again and caught up ${((Date.now() - resumed) / 1000).toFixed(1)} s after SIGCONT`,
      );
    } finally {
      paused.kill('SIGCONT');
    }
    await c.kill(0);
    await c.kill(1);
    for (let i = 0; i < 50; i++)
      expect(await (await fetch(`${c.url(2)}/buckets/g/keys/p${i}?r=1`)).text()).toBe(`p${i}`);
  }, 90_000);

  it('removes a dead member only by the admin action, and only once it is down', async () => {
    c = await TestCluster.start(3, FAST, { gossip: true });
    await allUp(c);
    const remove = (id: string) => fetch(`${c!.url(0)}/admin/members/${id}/remove`, { method: 'POST' });
    const refused = await remove('n3');
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ error: 'member_not_down' });

    await c.kill(2);
    await waitFor('n3 down', async () => (await states(c!.url(0))).n3 === 'down', 20_000);
    expect(Object.keys(await states(c.url(1)))).toContain('n3'); // down members stay in the ring
    const removed = await remove('n3');
    expect(removed.status).toBe(200);
    for (const i of [0, 1]) {
      await waitFor(
        `n${i + 1} drops n3`,
        async () =>
          Object.keys(await states(c!.url(i)))
            .sort()
            .join() === 'n1,n2',
      );
    }
    const w = await fetch(`${c.url(1)}/buckets/g/keys/after?w=2`, { method: 'PUT', body: 'two nodes' });
    expect(w.status).toBe(204);
  }, 60_000);

  it('rebuilds no anti-entropy tree while the ring does not change, however many heartbeats', async () => {
    c = await TestCluster.start(3, [...FAST, '--anti-entropy-interval-ms', '100'], { gossip: true });
    await allUp(c);
    for (let i = 0; i < 50; i++)
      await fetch(`${c.url(0)}/buckets/ae/keys/k${i}?w=all`, { method: 'PUT', body: 'v' });
    const urls = c.nodes.map((n) => n.url);
    const rebuilds = () => metric(urls, /^dynamo_merkle_rebuilds_total/);
    await new Promise((r) => setTimeout(r, 1000)); // the ring has settled: every node has seen it
    const before = await rebuilds();
    await new Promise((r) => setTimeout(r, 3000)); // 15 heartbeats and 30 exchanges per node
    expect(await rebuilds()).toBe(before);
    expect(await metric(urls, /^dynamo_merkle_divergent_ranges/)).toBe(0);
  }, 60_000);

  it('refuses to restart a removed member on its old data, and the cluster keeps it removed', async () => {
    c = await TestCluster.start(4, FAST, { gossip: true });
    await allUp(c);
    await c.kill(3);
    await waitFor('n4 down', async () => (await states(c!.url(0))).n4 === 'down', 20_000);
    expect((await fetch(`${c.url(0)}/admin/members/n4/remove`, { method: 'POST' })).status).toBe(200);
    await waitFor('n4 gone', async () => !('n4' in (await states(c!.url(1)))), 20_000);
    await expect(c.startNode(3)).rejects.toThrow(/was removed from the cluster/);
    await new Promise((r) => setTimeout(r, 1000));
    for (const i of [0, 1, 2]) expect(Object.keys(await states(c.url(i))).sort()).toEqual(['n1', 'n2', 'n3']);
  }, 60_000);

  it('follows a member to a new address at once, although its old connections stay open and silent', async () => {
    c = await TestCluster.start(3, [...FAST, '--request-timeout-ms', '1000'], { gossip: true });
    await allUp(c);
    for (let i = 0; i < 10; i++)
      expect(
        (await fetch(`${c.url(0)}/buckets/mv/keys/k${i}?w=all`, { method: 'PUT', body: 'v' })).status,
      ).toBe(204);
    // n3 "moves": the old process freezes with its sockets open (as a vanished host leaves half-open
    // connections), and a copy of its data starts on another loopback address.
    const old = c.nodes[2]!.proc!;
    old.kill('SIGSTOP');
    try {
      const moved = `${c.nodes[2]!.dataDir}-moved`;
      cpSync(c.nodes[2]!.dataDir, moved, { recursive: true });
      c.nodes[2]!.dataDir = moved;
      await c.startNode(2, true, { host: '127.0.0.3' });
      const started = Date.now();
      await waitFor(
        'w=all and r=all through n1 reach n3 at its new address',
        async () => {
          const w = await fetch(`${c!.url(0)}/buckets/mv/keys/after?w=all&timeout=1000`, {
            method: 'PUT',
            body: 'x',
          });
          const r = await fetch(`${c!.url(0)}/buckets/mv/keys/k0?r=all&timeout=1000`);
          return w.status === 204 && r.status === 200;
        },
        20_000,
      );
      console.log(
        `address change: n1 reached n3 at its new address ${Date.now() - started} ms after it started there`,
      );
    } finally {
      old.kill('SIGKILL');
    }
  }, 60_000);
});
