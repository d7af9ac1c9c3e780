/**
 * The write path's promise on real node processes: an acknowledged write is never silently lost. Each
 * test replays one behaviour the fault-injection run observed losing writes (issue: causal identity),
 * and fails on the code before the fix.
 */
import { cpSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { hashKey, Ring } from '../../node/src/ring/index.js';
import { metric, readValues, TestCluster, waitFor } from './harness.js';

interface RingView {
  members: Array<{ id: string; tokens: string[] }>;
}

/** The key's replicas (n=3) as the cluster's ring places them, by node index. */
async function replicasOf(c: TestCluster, bucket: string, key: string): Promise<number[]> {
  const view = (await (await fetch(`${c.url(0)}/admin/ring?tokens=true`)).json()) as RingView;
  const ring = new Ring(view.members.map((m) => ({ id: m.id, tokens: m.tokens })));
  return ring.preferenceList(hashKey(bucket, key), 3).map((id) => c.nodes.findIndex((n) => n.id === id));
}

/** A key of which node `not` is no replica. */
async function keyAvoiding(c: TestCluster, bucket: string, not: number): Promise<[string, number[]]> {
  for (let i = 0; ; i++) {
    const replicas = await replicasOf(c, bucket, `k${i}`);
    if (!replicas.includes(not)) return [`k${i}`, replicas];
  }
}

/** The live values of a key read through url with r=all (sorted), [] when absent. */
async function valuesAt(url: string, bucket: string, key: string): Promise<string[]> {
  const r = await readValues(url, bucket, key, '?r=all');
  if (r.status !== 200 && r.status !== 300 && r.status !== 404)
    throw new Error(`read answered ${r.status}: ${r.body}`);
  return r.values.sort();
}

/** Restarts the given nodes and waits until no node holds a hint any more. */
async function restartAndDrain(c: TestCluster, nodes: number[]): Promise<void> {
  for (const i of nodes) await c.startNode(i);
  const urls = c.nodes.map((n) => n.url);
  await waitFor('hints delivered', async () => (await metric(urls, /^dynamo_hints_pending\{/)) === 0, 30_000);
}

const put = (url: string, bucket: string, key: string, value: string, query = '', headers = {}) =>
  fetch(`${url}/buckets/${bucket}/keys/${key}${query}`, {
    method: 'PUT',
    body: value,
    headers: { 'Content-Type': 'text/plain', ...headers },
  });

describe('acknowledged writes survive', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('two blind writes through a stand-in while every replica is down both come back as siblings', async () => {
    c = await TestCluster.start(5, [
      ...['--hint-delivery-interval-ms', '200', '--request-timeout-ms', '1000'],
      ...['--anti-entropy-interval-ms', '600000'],
    ]);
    const [key, replicas] = await keyAvoiding(c, 'si', 0);
    for (const r of replicas) await c.kill(r);
    for (const value of ['one', 'two']) {
      const res = await put(c.url(0), 'si', key, value);
      expect(res.status, await res.text()).toBe(204);
    }
    await restartAndDrain(c, replicas);
    expect(await valuesAt(c.url(replicas[0]!), 'si', key)).toEqual(['one', 'two']);
    expect(
      await metric(
        c.nodes.map((n) => n.url),
        /^dynamo_dot_collisions_total/,
      ),
    ).toBe(0);
  });

  it('a key re-created after a reap survives a replica that kept the old tombstone', async () => {
    c = await TestCluster.start(3, [
      ...['--tombstone-grace-ms', '1000', '--hint-window-ms', '1000'],
      ...['--tombstone-reap-interval-ms', '200', '--anti-entropy-interval-ms', '300'],
    ]);
    const url = c.url(0);
    expect((await put(url, 'rc', 'k', 'v1', '?w=all')).status).toBe(204);
    const read = await fetch(`${url}/buckets/rc/keys/k?r=all`);
    const ctx = read.headers.get('x-dynamo-context')!;
    const del = await fetch(`${url}/buckets/rc/keys/k?w=all`, {
      method: 'DELETE',
      headers: { 'X-Dynamo-Context': ctx },
    });
    expect(del.status).toBe(204);
    // n3's copy of the tombstone, as a replica whose reap never landed (a crash lost it) would keep it.
    await c.kill(2);
    const snapshot = `${c.nodes[2]!.dataDir}.snapshot`;
    cpSync(c.nodes[2]!.dataDir, snapshot, { recursive: true });
    await c.startNode(2);
    const keysOn = (i: number) => metric(c!.url(i), /^dynamo_storage_keys/);
    for (let i = 0; i < 3; i++)
      await waitFor(`n${i + 1} reaped`, async () => (await keysOn(i)) === 0, 20_000);
    await c.kill(2);
    rmSync(c.nodes[2]!.dataDir, { recursive: true, force: true });
    cpSync(snapshot, c.nodes[2]!.dataDir, { recursive: true });
    await c.startNode(2);
    expect(await keysOn(2)).toBe(1);
    // The re-created key, written blind through the node that coordinated the delete.
    expect((await put(url, 'rc', 'k', 'v2', '?w=2')).status).toBe(204);
    // Anti-entropy meets the old tombstone and the new value: the value must win on every replica.
    await waitFor(
      'replicas agree',
      async () =>
        (await metric(
          c!.nodes.map((n) => n.url),
          /^dynamo_merkle_divergent_ranges/,
        )) === 0,
      20_000,
    );
    await new Promise((r) => setTimeout(r, 1500)); // a few more exchanges
    for (let i = 0; i < 3; i++) expect(await valuesAt(c.url(i), 'rc', 'k')).toEqual(['v2']);
  }, 60_000);

  it('a write whose first replica hangs is answered write_outcome_unknown, not stored a second time elsewhere; a delete acknowledged later stays deleted', async () => {
    // Seen by the chaos suite: the coordinator retried on the next replica, the hung one applied the
    // write when it resumed under a dot of its own, and that copy brought back an acknowledged delete.
    const flags = ['--request-timeout-ms', '2000', '--anti-entropy-interval-ms', '600000'];
    c = await TestCluster.start(4, [...flags, '--gossip-interval-ms', '200'], { gossip: true });
    const [key, replicas] = await keyAvoiding(c, 'hang', 0);
    const hung = replicas[0]!;
    c.nodes[hung]!.proc!.kill('SIGSTOP');
    try {
      const maybe = await put(c.url(0), 'hang', key, 'maybe', '?w=2&timeout=2000');
      expect(maybe.status).toBe(503);
      expect(((await maybe.json()) as { error: string }).error).toBe('write_outcome_unknown');
      // Once the failure detector holds it down, the next replica coordinates at once.
      const ring = async () =>
        (
          (await (await fetch(`${c!.url(0)}/admin/ring`)).json()) as {
            members: Array<{ id: string; state: string }>;
          }
        ).members;
      await waitFor(
        'the hung replica held down',
        async () => (await ring()).find((m) => m.id === c!.nodes[hung]!.id)?.state === 'down',
        15_000,
      );
      expect((await put(c.url(0), 'hang', key, 'acked', '?w=2')).status).toBe(204);
      const read = await fetch(`${c.url(0)}/buckets/hang/keys/${key}?r=2`);
      const del = await fetch(`${c.url(0)}/buckets/hang/keys/${key}?w=2`, {
        method: 'DELETE',
        headers: { 'X-Dynamo-Context': read.headers.get('x-dynamo-context')! },
      });
      expect(del.status).toBe(204);
    } finally {
      c.nodes[hung]!.proc!.kill('SIGCONT');
    }
    await waitFor('the hung replica answers', async () => (await fetch(`${c!.url(hung)}/health`)).ok);
    await new Promise((r) => setTimeout(r, 3000)); // its queued requests and the hints arrive
    // The acknowledged, then deleted, value never comes back; the unacknowledged one may.
    for (let i = 0; i < 4; i++) expect(await valuesAt(c.url(i), 'hang', key)).not.toContain('acked');
  });

  it('a graceful shutdown right after acknowledging writes keeps a hint for each replica that missed one', async () => {
    c = await TestCluster.start(3, [
      ...['--request-timeout-ms', '1500', '--anti-entropy-interval-ms', '600000'],
      ...['--hint-delivery-interval-ms', '200'],
    ]);
    c.nodes[2]!.proc!.kill('SIGSTOP'); // n3 hangs: every write's merge to it times out after the ack
    try {
      for (let i = 0; i < 10; i++)
        expect((await put(c.url(0), 'sd', `k${i}`, `v${i}`, '?w=2')).status).toBe(204);
      await c.kill(0, 'SIGTERM');
      expect(c.nodes[0]!.output.join('')).not.toContain('could not store a hint');
      await c.startNode(0);
      expect(await metric(c.url(0), /^dynamo_hints_pending\{target="n3"/)).toBe(10);
    } finally {
      c.nodes[2]!.proc!.kill('SIGCONT');
    }
    await waitFor('hints delivered', async () => (await metric(c!.url(0), /^dynamo_hints_pending\{/)) === 0);
    for (let i = 0; i < 10; i++) expect(await valuesAt(c.url(0), 'sd', `k${i}`)).toEqual([`v${i}`]);
  }, 60_000);

  it('a write held only by stand-in hints outlives the hint window until a replica has it', async () => {
    c = await TestCluster.start(5, [
      ...['--hint-delivery-interval-ms', '200', '--hint-window-ms', '1000', '--request-timeout-ms', '1000'],
      ...['--anti-entropy-interval-ms', '600000', '--tombstone-grace-ms', '1000'],
    ]);
    const [key, replicas] = await keyAvoiding(c, 'lc', 0);
    for (const r of replicas) await c.kill(r);
    expect((await put(c.url(0), 'lc', key, 'last copy')).status).toBe(204);
    const standIns = [0, 1, 2, 3, 4].filter((i) => !replicas.includes(i)).map((i) => c!.url(i));
    await waitFor(
      'hints kept past the window',
      async () => (await metric(standIns, /^dynamo_hints_overdue\{/)) > 0,
    );
    expect(await metric(standIns, /^dynamo_hints_expired_total/)).toBe(0);
    await restartAndDrain(c, replicas);
    expect(await valuesAt(c.url(replicas[0]!), 'lc', key)).toEqual(['last copy']);
  }, 60_000);

  it('hints for a member removed while down are delivered to the key’s current replicas', async () => {
    c = await TestCluster.start(4, ['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'], {
      gossip: true,
    });
    const states = async () =>
      (
        (await (await fetch(`${c!.url(0)}/admin/ring`)).json()) as {
          members: Array<{ id: string; state: string }>;
        }
      ).members;
    await waitFor('all up', async () => (await states()).every((m) => m.state === 'up'), 30_000);
    await c.kill(3);
    await waitFor(
      'n4 down',
      async () => (await states()).find((m) => m.id === 'n4')?.state === 'down',
      20_000,
    );
    const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
    for (const k of keys) expect((await put(c.url(i(k)), 'rm', k, `v-${k}`, '?w=2')).status).toBe(204);
    const urls = c.nodes.slice(0, 3).map((n) => n.url);
    expect(await metric(urls, /^dynamo_hints_pending\{target="n4"/)).toBeGreaterThan(0);
    const removed = await fetch(`${c.url(0)}/admin/members/n4/remove`, { method: 'POST' });
    expect(removed.status).toBe(200);
    // n4 is gone for good: its hints go to the keys' replicas now, and the queues drain.
    await waitFor(
      'hints redirected',
      async () => (await metric(urls, /^dynamo_hints_pending\{/)) === 0,
      30_000,
    );
    for (const k of keys) expect(await valuesAt(c.url(1), 'rm', k)).toEqual([`v-${k}`]);

    function i(k: string): number {
      return Number(k.slice(1)) % 3;
    }
  }, 90_000);
});
