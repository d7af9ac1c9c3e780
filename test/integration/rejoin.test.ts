/**
 * What a node does with a data directory that is no longer its place in the ring, on real node
 * processes: one it left by a decommission (everything handed over) is cleared with
 * --rejoin-after-leave and the node joins again as a new member, and nothing deleted meanwhile comes
 * back; one whose member an admin removed keeps refusing, flag or not.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AckChecker } from './ack-checker.js';
import { metric, readValues, TestCluster, waitFor } from './harness.js';

const FAST = ['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'];
const GC = [
  '--tombstone-grace-ms',
  '1000',
  '--hint-window-ms',
  '1000',
  '--tombstone-reap-interval-ms',
  '200',
];

interface RingView {
  members: Array<{ id: string; state: string; tokens?: string[] }>;
}

const ring = async (url: string, tokens = false): Promise<RingView> =>
  (await fetch(`${url}/admin/ring${tokens ? '?tokens=true' : ''}`)).json() as Promise<RingView>;
const stateOf = async (url: string, id: string) => (await ring(url)).members.find((m) => m.id === id)?.state;
const nodeState = async (url: string) =>
  ((await (await fetch(`${url}/admin/status`)).json()) as { state: string }).state;

describe('a data directory that is not the node’s place in the ring', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('a node that left rejoins as a new member on a cleared directory; a removed one keeps refusing', async () => {
    c = await TestCluster.start(4, [...FAST, ...GC, '--anti-entropy-interval-ms', '300'], { gossip: true });
    const checker = new AckChecker('rejoin');
    for (let i = 0; i < 150; i++)
      expect(await checker.write(c.url(0), `live-${i}`, `v${i}`, '?w=all')).toBe(true);
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${c.url(0)}/buckets/rejoin/keys/gone-${i}?w=all`, {
        method: 'PUT',
        body: 'old',
      });
      expect(res.status).toBe(204);
    }

    // n4 leaves: its data streams to n1-n3, which then hold every key (n = 3).
    expect((await fetch(`${c.url(3)}/admin/decommission`, { method: 'POST' })).status).toBe(202);
    await waitFor('n4 left', async () => (await nodeState(c!.url(3))) === 'left', 60_000);
    // Having left, it takes no replica request: a write it took could be lost with its volume.
    expect((await fetch(`${c.url(3)}/buckets/rejoin/keys/late`, { method: 'PUT', body: 'x' })).status).toBe(
      503,
    );
    await c.kill(3);

    // Meanwhile the gone-* keys are deleted and their tombstones reaped on every remaining replica.
    for (let i = 0; i < 50; i++) {
      const read = await fetch(`${c.url(0)}/buckets/rejoin/keys/gone-${i}?r=all`);
      expect(read.status).toBe(200);
      const res = await fetch(`${c.url(0)}/buckets/rejoin/keys/gone-${i}?w=all`, {
        method: 'DELETE',
        headers: { 'X-Dynamo-Context': read.headers.get('x-dynamo-context')! },
      });
      expect(res.status).toBe(204);
    }
    for (const i of [0, 1, 2]) {
      await waitFor(
        `n${i + 1} reaped the tombstones`,
        async () => (await metric(c!.url(i), /^dynamo_storage_keys/)) === 150,
        30_000,
      );
    }

    // Without the flag it refuses, and says how to rejoin.
    await expect(c.startNode(3)).rejects.toThrow(/was decommissioned.*--rejoin-after-leave/);

    // With it, it clears its old data and joins again: up as its peers see it, serving every key.
    await c.startNode(3, true, { args: ['--rejoin-after-leave'] });
    expect(await nodeState(c.url(3))).toBe('up');
    for (const i of [0, 1, 2])
      await waitFor(`n${i + 1} sees n4 up`, async () => (await stateOf(c!.url(i), 'n4')) === 'up');
    expect(await checker.verify(c.url(3), '?r=all')).toEqual([]);
    // Nothing of what it held before came back: the deleted keys stay deleted on all replicas, n4 too.
    for (let i = 0; i < 50; i++) {
      const got = await readValues(c.url(3), 'rejoin', `gone-${i}`, '?r=all');
      expect(got.status, `gone-${i}: ${got.values.join(',')}`).toBe(404);
    }

    // A member removed by an admin never handed its data over: it refuses with or without the flag.
    await c.kill(3);
    await waitFor('n1 holds n4 down', async () => (await stateOf(c!.url(0), 'n4')) === 'down', 30_000);
    expect((await fetch(`${c.url(0)}/admin/members/n4/remove`, { method: 'POST' })).status).toBe(200);
    const args = ['--rejoin-after-leave'];
    await expect(c.startNode(3, true, { args })).rejects.toThrow(/removed_member|was removed/);
    // Its data directory was kept: it refuses again, the same way.
    await expect(c.startNode(3, true, { args })).rejects.toThrow(/was removed/);
  }, 240_000);
});
