/**
 * Changing a bucket's n moves data on real node processes: raised, each key's new replica pulls it at
 * once (anti-entropy is off here, so nothing else could); lowered, the replicas that no longer replicate
 * a key delete it, and every key stays readable with its value.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { metric, TestCluster, waitFor } from './harness.js';

const FLAGS = [
  ...['--anti-entropy-interval-ms', '3600000', '--ring-settle-ms', '300', '--cleanup-interval-ms', '300'],
];
const KEYS = Array.from({ length: 200 }, (_, i) => `k${i}`);

const setN = async (url: string, n: number, w: number) => {
  const res = await fetch(`${url}/buckets/wide/props`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ n, r: Math.min(2, n), w }),
  });
  expect(res.status).toBe(200);
};

describe('changing a bucket’s n', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  for (const gossip of [false, true]) {
    it(`${gossip ? 'gossip' : 'static'}: raising n streams to the new replicas, lowering it cleans up the old ones`, async () => {
      c = await TestCluster.start(4, FLAGS, { gossip });
      const urls = c.nodes.map((n) => n.url);
      const copies = () => metric(urls, /^dynamo_storage_keys\b/);
      await setN(urls[0]!, 2, 2);
      for (const k of KEYS) {
        const res = await fetch(`${urls[1]}/buckets/wide/keys/${k}?w=all`, { method: 'PUT', body: `v-${k}` });
        expect(res.status).toBe(204);
      }
      expect(await copies()).toBe(KEYS.length * 2);

      await setN(urls[2]!, 3, 3);
      await waitFor('a third copy of every key', async () => (await copies()) === KEYS.length * 3, 20_000);
      expect(await metric(urls, /^dynamo_merkle_keys_repaired_total/)).toBe(0);
      const status = (await (await fetch(`${urls[3]}/admin/status`)).json()) as {
        widening: Array<{ bucket: string; fromN: number; toN: number; finishedAt: string | null }>;
      };
      expect(status.widening).toMatchObject([{ bucket: 'wide', fromN: 2, toN: 3 }]);
      // Every replica holds it: with r=3 (all three) each key reads back.
      for (const k of KEYS) {
        const read = await fetch(`${urls[0]}/buckets/wide/keys/${k}?r=3`);
        expect(read.status, k).toBe(200);
        expect(await read.text()).toBe(`v-${k}`);
      }

      await setN(urls[1]!, 1, 1);
      await waitFor('one copy of every key', async () => (await copies()) === KEYS.length, 20_000);
      for (const k of KEYS) {
        const read = await fetch(`${urls[3]}/buckets/wide/keys/${k}?r=1`);
        expect(read.status, k).toBe(200);
        expect(await read.text()).toBe(`v-${k}`);
      }
    }, 90_000);
  }
});
