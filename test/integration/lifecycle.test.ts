/**
 * The membership lifecycle on real gossip nodes, one observed failure each: seeds killed together and
 * restarted, a restart with the clock set back, and a node that starts while it can reach no seed. Each
 * asserts outcomes: no acknowledged write missing, no read answered from a partial ring, no node held
 * down, convergence within a stated bound.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { clockSetBack } from '../support/system-tools.js';
import { metric, readValues, TestCluster, waitFor } from './harness.js';

const FLAGS = ['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RingView {
  members: Array<{ id: string; state: string; rack: string | null }>;
}
const ringOf = async (url: string) => ((await (await fetch(`${url}/admin/ring`)).json()) as RingView).members;

async function load(c: TestCluster, bucket: string, count: number, w = 'all'): Promise<string[]> {
  const keys = Array.from({ length: count }, (_, i) => `k${i}`);
  for (const k of keys) {
    const res = await fetch(`${c.url(0)}/buckets/${bucket}/keys/${k}?w=${w}`, {
      method: 'PUT',
      body: `v-${k}`,
    });
    expect(res.status).toBe(204);
  }
  return keys;
}

describe('membership lifecycle', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    for (const n of c?.nodes ?? []) n.proc?.kill('SIGCONT');
    await c?.stop();
    c = undefined;
  });

  it('two members killed -9 and restarted together serve only on the whole ring, and lose nothing', async () => {
    c = await TestCluster.start(3, FLAGS, { gossip: true });
    const keys = await load(c, 'seeds', 40);
    // n3 silent the whole time: the restarted pair hears only from each other.
    c.nodes[2]!.proc!.kill('SIGSTOP');
    await Promise.all([c.kill(0), c.kill(1)]);
    await Promise.all([c.startNode(0, false), c.startNode(1, false)]);
    const answers = new Map<number, number>();
    const acked: string[] = [];
    const until = Date.now() + 4000;
    for (let round = 0; Date.now() < until; round++) {
      for (const i of [0, 1]) {
        // Every ring this node shows has all three members: never a ring of just the restarted two.
        expect((await ringOf(c.url(i))).map((m) => m.id)).toEqual(['n1', 'n2', 'n3']);
        const k = keys[round % keys.length]!;
        const read = await readValues(c.url(i), 'seeds', k, '');
        answers.set(read.status, (answers.get(read.status) ?? 0) + 1);
        // Not found would be a read on a partial ring: only the value, or 503 before it rejoined.
        if (read.status === 200) expect(read.values).toEqual([`v-${k}`]);
        else expect(read.status, read.body).toBe(503);
        const fresh = `fresh-${round}-${i}`;
        const put = await fetch(`${c.url(i)}/buckets/seeds/keys/${fresh}`, { method: 'PUT', body: fresh });
        if (put.status === 204) acked.push(fresh);
        else expect(put.status).toBe(503);
      }
    }
    expect(answers.get(200) ?? 0).toBeGreaterThan(0);
    expect(acked.length).toBeGreaterThan(0);
    c.nodes[2]!.proc!.kill('SIGCONT');
    // Every write acknowledged in the window reaches all three replicas (hints for n3) within 20 s.
    const healed = Date.now();
    await waitFor(
      'every acknowledged write on every replica',
      async () => {
        for (const k of acked) {
          const read = await readValues(c!.url(2), 'seeds', k, '?r=all');
          if (read.status !== 200 || read.values[0] !== k) return false;
        }
        return true;
      },
      20_000,
    );
    console.log(
      `two members restarted together: ${acked.length} writes acknowledged while the third was silent, on every replica ${((Date.now() - healed) / 1000).toFixed(1)} s after it resumed`,
    );
  });

  it('a node restarted with its clock an hour behind is up again and gets its hints', async () => {
    c = await TestCluster.start(3, FLAGS, { gossip: true });
    await c.kill(1);
    await waitFor(
      'n2 down',
      async () => (await ringOf(c!.url(0))).find((m) => m.id === 'n2')?.state === 'down',
    );
    // Writes it misses become hints on the others.
    const keys = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const res = await fetch(`${c!.url(0)}/buckets/skew/keys/m${i}`, { method: 'PUT', body: `m${i}` });
        expect(res.status).toBe(204);
        return `m${i}`;
      }),
    );
    const urls = [c.url(0), c.url(2)];
    expect(await metric(urls, /^dynamo_hints_pending\b/)).toBeGreaterThan(0);
    const restarted = Date.now();
    await c.startNode(1, true, { prefix: clockSetBack(3600) });
    // Its generation still grows (persisted), so no peer keeps its old entry and holds it down.
    await waitFor(
      'n2 up on every peer',
      async () => {
        for (const url of urls)
          if ((await ringOf(url)).find((m) => m.id === 'n2')?.state !== 'up') return false;
        return true;
      },
      10_000,
    );
    await waitFor('hints drained', async () => (await metric(urls, /^dynamo_hints_pending\b/)) === 0, 15_000);
    const seconds = (Date.now() - restarted) / 1000;
    for (const k of keys) {
      const read = await fetch(`${c.url(1)}/buckets/skew/keys/${k}?r=all`);
      expect(read.status, k).toBe(200);
    }
    console.log(
      `clock set back 1 h: up on every peer and hints drained ${seconds.toFixed(1)} s after restart`,
    );
  });

  it('a node restarted with another rack keeps the one it joined with: replicas do not move unstreamed', async () => {
    const racks: Record<string, string> = { n1: 'zone-a', n2: 'zone-b', n3: 'zone-c' };
    c = await TestCluster.start(3, FLAGS, { gossip: true, perNode: (id) => ['--rack', racks[id]!] });
    const rackOf = async (url: string, id: string) => {
      return (await ringOf(url)).find((m) => m.id === id)?.rack;
    };
    await waitFor('every member sees n3 in zone-c', async () => (await rackOf(c!.url(0), 'n3')) === 'zone-c');
    // Restarted as if its pod's zone label had changed: it keeps zone-c, everywhere.
    await c.kill(2);
    await c.startNode(2, true, { args: ['--rack', 'zone-z'] });
    expect(await rackOf(c.url(2), 'n3')).toBe('zone-c');
    await waitFor('n1 sees n3 up again', async () =>
      (await ringOf(c!.url(0))).some((m) => m.id === 'n3' && m.state === 'up'),
    );
    expect(await rackOf(c.url(0), 'n3')).toBe('zone-c');
  });

  it('a one-node cluster restarted (kill -9) serves again on its own ring', async () => {
    c = await TestCluster.start(1, FLAGS, { gossip: true });
    const keys = await load(c, 'alone', 10, '1');
    await c.kill(0);
    await c.startNode(0);
    for (const k of keys)
      expect(await (await fetch(`${c.url(0)}/buckets/alone/keys/${k}?r=1`)).text()).toBe(`v-${k}`);
  });

  it('a new node that reaches no seed waits, founds no ring of its own, and joins once the seed is back', async () => {
    c = await TestCluster.start(1, FLAGS, { gossip: true });
    const keys = await load(c, 'lonely', 20, '1');
    // The seed is unreachable (cluster DNS down, in the field) while n2 starts for the first time.
    await c.kill(0);
    const n2 = await c.addNode(false);
    for (let i = 0; i < 10; i++) {
      expect((await fetch(`${c.url(n2)}/ready`)).status).toBe(503);
      const read = await fetch(`${c.url(n2)}/buckets/lonely/keys/k1`);
      expect(read.status).toBe(503);
      expect(((await read.json()) as { error: string }).error).toBe('not_ready');
      await sleep(200);
    }
    const back = Date.now();
    await c.startNode(0);
    await waitFor('n2 ready', async () => (await fetch(`${c!.url(n2)}/ready`)).ok, 20_000);
    const joined = (Date.now() - back) / 1000;
    // One ring, the seed's: both members on both nodes, and the seed's data read through n2.
    for (const url of [c.url(0), c.url(n2)])
      expect((await ringOf(url)).map((m) => [m.id, m.state])).toEqual([
        ['n1', 'up'],
        ['n2', 'up'],
      ]);
    for (const k of keys) {
      const read = await fetch(`${c.url(n2)}/buckets/lonely/keys/${k}`);
      expect(read.status, k).toBe(200);
      expect(await read.text()).toBe(`v-${k}`);
    }
    console.log(
      `no seed reachable: n2 waited unready, then joined the seed's ring ${joined.toFixed(1)} s after it was back`,
    );
  });
});
