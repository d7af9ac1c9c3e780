/**
 * What a node does with a data directory that is no longer its place in the ring, on real node
 * processes: one it left by a decommission (everything handed over) is cleared with
 * --rejoin-after-leave and the node joins again as a new member, and nothing deleted meanwhile comes
 * back; one whose member an admin removed keeps refusing, flag or not; one whose tokens are not those
 * --initial-tokens assigns refuses with token_mismatch. Each refusal is written to the termination
 * message file, as Kubernetes shows it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AckChecker } from './ack-checker.js';
import { metric, nodeState, QUICK_REAP, readValues, TestCluster, waitFor } from './harness.js';

const FAST = ['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'];

interface RingView {
  members: Array<{ id: string; state: string; tokens?: string[] }>;
}

const ring = async (url: string, tokens = false): Promise<RingView> =>
  (await fetch(`${url}/admin/ring${tokens ? '?tokens=true' : ''}`)).json() as Promise<RingView>;
const stateOf = async (url: string, id: string) => (await ring(url)).members.find((m) => m.id === id)?.state;

describe('a data directory that is not the node’s place in the ring', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('a node that left rejoins as a new member on a cleared directory; a removed one keeps refusing', async () => {
    c = await TestCluster.start(4, [...FAST, ...QUICK_REAP, '--anti-entropy-interval-ms', '300'], {
      gossip: true,
    });
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
    const message = join(c.nodes[3]!.dataDir, '..', 'n4.termination-log');
    await expect(c.startNode(3, true, { args: ['--termination-message-file', message] })).rejects.toThrow(
      /was decommissioned.*--rejoin-after-leave/,
    );
    expect(readFileSync(message, 'utf8')).toMatch(/^decommissioned: node n4 was decommissioned/);

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
    const args = ['--rejoin-after-leave', '--termination-message-file', message];
    await expect(c.startNode(3, true, { args })).rejects.toThrow(/removed_member|was removed/);
    expect(readFileSync(message, 'utf8')).toMatch(/^removed_member: node n4 was removed/);
    // Its data directory was kept: it refuses again, the same way.
    await expect(c.startNode(3, true, { args })).rejects.toThrow(/was removed/);
  }, 240_000);

  it('refuses to serve on tokens other than those --initial-tokens assigns, and serves on its own', async () => {
    c = await TestCluster.start(2, FAST, { gossip: true });
    const own = (await ring(c.url(0), true)).members.find((m) => m.id === 'n2')!.tokens!;
    expect(own).toHaveLength(64);
    await c.kill(1);
    // As a cluster re-created with the same name meets an old volume: 16 new tokens for a node that holds 64.
    const other = Array.from({ length: 16 }, () => randomBytes(16).toString('hex'));
    const message = join(c.nodes[1]!.dataDir, '..', 'n2.termination-log');
    await expect(
      c.startNode(1, true, {
        args: ['--initial-tokens', other.join(','), '--termination-message-file', message],
      }),
    ).rejects.toThrow(
      /token_mismatch|holds the 64 tokens it claimed before, but --initial-tokens assigns it 16/,
    );
    expect(readFileSync(message, 'utf8')).toMatch(
      /^token_mismatch: node n2's data directory .* holds the 64 tokens/,
    );
    // The tokens it holds, in any order, are its assignment: it serves.
    await c.startNode(1, true, { args: ['--initial-tokens', [...own].reverse().join(',')] });
    expect((await ring(c.url(0), true)).members.find((m) => m.id === 'n2')?.tokens).toEqual(own);
  }, 60_000);
});
