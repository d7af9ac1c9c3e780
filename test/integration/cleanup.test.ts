/**
 * Cleanup after moves on real gossip nodes: scaling 3 → 4 → 3 with deletes in between must never bring
 * a deleted key back, and the members that stopped replicating a range delete their copies.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { metric, nodeState, TestCluster, waitFor } from './harness.js';

const FLAGS = [
  ...['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200', '--cleanup-interval-ms', '300'],
  ...['--tombstone-grace-ms', '1000', '--hint-window-ms', '1000', '--tombstone-reap-interval-ms', '300'],
  ...['--anti-entropy-interval-ms', '500'],
];

describe('cleanup after moves', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('scaling 3 → 4 → 3 with deletes in between never resurrects a deleted key', async () => {
    c = await TestCluster.start(3, FLAGS, { gossip: true });
    const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
    for (const k of keys) {
      const res = await fetch(`${c.url(0)}/buckets/cl/keys/${k}?w=all`, { method: 'PUT', body: `v-${k}` });
      expect(res.status).toBe(204);
    }
    const n4 = await c.addNode(true);
    await waitFor('n4 up', async () => (await nodeState(c!.url(n4))) === 'up', 30_000);
    // Every old node stopped replicating about a quarter of the keys, and deletes its copies of them.
    for (const i of [0, 1, 2]) {
      await waitFor(
        `n${i + 1} cleaned up`,
        async () => (await metric(c!.url(i), /^dynamo_cleanup_keys_deleted_total/)) > 0,
        20_000,
      );
    }
    const deleted = keys.slice(0, 30);
    for (const k of deleted) {
      const read = await fetch(`${c.url(1)}/buckets/cl/keys/${k}?r=all`);
      const del = await fetch(`${c.url(1)}/buckets/cl/keys/${k}?w=all`, {
        method: 'DELETE',
        headers: { 'X-Dynamo-Context': read.headers.get('x-dynamo-context')! },
      });
      expect(del.status).toBe(204);
    }
    const urls = c.nodes.map((n) => n.url);
    await waitFor(
      'tombstones reaped',
      async () => (await metric(urls, /^dynamo_tombstones_reaped_total/)) >= 30,
      30_000,
    );
    // Back to 3: the ranges return to their old owners.
    expect((await fetch(`${c.url(n4)}/admin/decommission`, { method: 'POST' })).status).toBe(202);
    await waitFor('n4 left', async () => (await nodeState(c!.url(n4))) === 'left', 30_000);
    await new Promise((r) => setTimeout(r, 1500)); // anti-entropy exchanges on the old ring
    for (const k of keys) {
      const res = await fetch(`${c.url(0)}/buckets/cl/keys/${k}?r=all`);
      const body = await res.text();
      if (deleted.includes(k)) expect(res.status, `${k} came back: ${body}`).toBe(404);
      else expect([res.status, body]).toEqual([200, `v-${k}`]);
    }
  }, 120_000);

  it('is refused while a node holds hints, and runs on demand otherwise', async () => {
    c = await TestCluster.start(3, FLAGS, { gossip: true });
    const run = () => fetch(`${c!.url(0)}/admin/cleanup`, { method: 'POST' });
    const first = await run();
    expect(first.status).toBe(202);
    await c.kill(2);
    await waitFor(
      'n3 down',
      async () => {
        const ring = (await (await fetch(`${c!.url(0)}/admin/ring`)).json()) as {
          members: Array<{ id: string; state: string }>;
        };
        return ring.members.find((m) => m.id === 'n3')?.state === 'down';
      },
      20_000,
    );
    expect((await fetch(`${c.url(0)}/buckets/cl/keys/x?w=2`, { method: 'PUT', body: 'x' })).status).toBe(204);
    const refused = await run();
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ error: 'cleanup_blocked' });
  }, 60_000);
});
