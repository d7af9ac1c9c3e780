/**
 * A network partition between real node processes in their own network namespaces: both sides keep
 * taking writes with sloppy quorums, strict writes are refused where the true replicas are out of
 * reach, and after the heal every acknowledged value is there, concurrent ones as siblings.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { hashKey, Ring } from '../../node/src/ring/index.js';
import { AckChecker } from '../integration/ack-checker.js';
import { metric, waitFor } from '../integration/harness.js';
import { NetnsCluster } from './netns.js';

const FAST = [
  '--gossip-interval-ms',
  '200',
  '--hint-delivery-interval-ms',
  '200',
  '--request-timeout-ms',
  '2000',
];
const MINORITY = [0, 1];
const MAJORITY = [2, 3, 4];

interface RingView {
  members: Array<{ id: string; state: string; tokens: string[] }>;
}

const ringView = async (url: string) =>
  (await (await fetch(`${url}/admin/ring?tokens=true`)).json()) as RingView;

/** True once the node at url holds every member of ids down. */
async function seesDown(url: string, ids: string[]): Promise<boolean> {
  const view = await ringView(url);
  return ids.every((id) => view.members.find((m) => m.id === id)?.state === 'down');
}

describe('network partition', () => {
  let c: NetnsCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('keeps both sides writable (sloppy), refuses strict writes without true replicas, and loses nothing on heal', async () => {
    c = await NetnsCluster.start(5, FAST);
    const ids = c.nodes.map((n) => n.id);
    const view = await ringView(c.url(0));
    const ring = new Ring(view.members.map((m) => ({ id: m.id, tokens: m.tokens })));
    const pref = (key: string) => ring.preferenceList(hashKey('part', key), 3);

    const checker = new AckChecker('part');
    for (let i = 0; i < 40; i++)
      expect(await checker.write(c.url(i % 5), `before-${i}`, `before-${i}`)).toBe(true);

    c.partition(MINORITY, MAJORITY);
    const cut = Date.now();
    const minorityIds = MINORITY.map((i) => ids[i]!);
    const majorityIds = MAJORITY.map((i) => ids[i]!);
    await waitFor(
      'each side holds the other down',
      async () => {
        const sides = await Promise.all([
          ...MINORITY.map((i) => seesDown(c!.url(i), majorityIds)),
          ...MAJORITY.map((i) => seesDown(c!.url(i), minorityIds)),
        ]);
        return sides.every(Boolean);
      },
      30_000,
    );
    const detectMs = Date.now() - cut;

    // The same keys written on both sides at once: concurrent updates. Sloppy quorums take them all.
    const minorityAcks = [];
    const majorityAcks = [];
    for (let i = 0; i < 40; i++) {
      minorityAcks.push(checker.write(c.url(MINORITY[i % 2]!), `both-${i}`, `minority-${i}`));
      majorityAcks.push(checker.write(c.url(MAJORITY[i % 3]!), `both-${i}`, `majority-${i}`));
    }
    expect((await Promise.all(minorityAcks)).every(Boolean)).toBe(true);
    expect((await Promise.all(majorityAcks)).every(Boolean)).toBe(true);

    // Strict writes count only true replicas reachable from the coordinator's side.
    let refused = 0;
    let taken = 0;
    for (let i = 0; i < 40; i++) {
      const key = `strict-${i}`;
      const reachable = pref(key).filter((id) => minorityIds.includes(id)).length;
      const res = await fetch(`${c.url(0)}/buckets/part/keys/${key}?strict=true`, {
        method: 'PUT',
        body: 'x',
      });
      const body = await res.text();
      if (reachable >= 2) {
        expect(res.status, body).toBe(204);
        taken++;
      } else {
        expect(res.status, body).toBe(503);
        expect(JSON.parse(body)).toMatchObject({ error: 'quorum_not_met', needed: 2, got: reachable });
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);

    c.heal();
    const healed = Date.now();
    // Converged: every acknowledged value is readable through either side, concurrent ones as siblings,
    // and no hint is left waiting.
    const urls = c.nodes.map((n) => n.url);
    await waitFor(
      'hints delivered',
      async () => (await metric(urls, /^dynamo_hints_pending\{/)) === 0,
      60_000,
    );
    await waitFor(
      'acknowledged writes readable on both sides',
      async () => {
        const missing = [...(await checker.verify(c!.url(0))), ...(await checker.verify(c!.url(4)))];
        return missing.length === 0;
      },
      60_000,
    );
    const convergeMs = Date.now() - healed;
    expect(await checker.verify(c.url(2), '?r=3')).toEqual([]);
    const both = await (await fetch(`${c.url(3)}/buckets/part/keys/both-7`)).json();
    expect((both as { siblings: unknown[] }).siblings).toHaveLength(2);
    console.log(
      `partition: each side held the other down ${(detectMs / 1000).toFixed(1)} s after the cut; ` +
        `${checker.size} writes acknowledged (strict: ${taken} taken, ${refused} refused); ` +
        `converged ${(convergeMs / 1000).toFixed(1)} s after the heal`,
    );
  }, 180_000);
});
