import { afterEach, describe, expect, it } from 'vitest';
import { hashKey, Ring } from '../../node/src/ring/index.js';
import { metric, TestCluster, waitFor } from './harness.js';

describe('sloppy and strict quorums on 4 nodes (n=3)', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('accepts w=3 through a stand-in when a replica is dead, refuses it when strict, and hands the writes over later', async () => {
    c = await TestCluster.start(4, ['--hint-delivery-interval-ms', '200']);
    const view = (await (await fetch(`${c.url(0)}/admin/ring?tokens=true`)).json()) as {
      members: Array<{ id: string; tokens: string[] }>;
    };
    const ring = new Ring(view.members);
    const replicasOf = (key: string) => ring.preferenceList(hashKey('sq', key), 3);
    await c.kill(3); // n4
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const n4Keys = keys.filter((k) => replicasOf(k).includes('n4'));
    expect(n4Keys.length).toBeGreaterThan(10);

    const strictStatus = await Promise.all(
      keys.map(
        async (k) =>
          (
            await fetch(`${c!.url(0)}/buckets/sq/keys/strict-${k}?w=3&strict=true`, {
              method: 'PUT',
              body: 'x',
            })
          ).status,
      ),
    );
    keys.forEach((k, i) => {
      if (replicasOf(`strict-${k}`).includes('n4')) expect(strictStatus[i], k).toBe(503);
      else expect(strictStatus[i], k).toBe(204);
    });

    for (const k of keys) {
      const r = await fetch(`${c.url(0)}/buckets/sq/keys/${k}?w=3`, { method: 'PUT', body: `v-${k}` });
      expect(r.status, k).toBe(204); // sloppy: a stand-in counts
    }
    expect(
      await metric(
        [0, 1, 2].map((i) => c!.url(i)),
        /^dynamo_hints_pending\{.*target="n4"/,
      ),
    ).toBeGreaterThanOrEqual(n4Keys.length);

    await c.startNode(3);
    await waitFor(
      'stand-ins hand over',
      async () =>
        (await metric(
          [0, 1, 2].map((i) => c!.url(i)),
          /^dynamo_hints_pending\{.*target="n4"/,
        )) === 0,
      20_000,
    );
    await c.kill(0);
    await c.kill(1);
    await c.kill(2);
    for (const k of n4Keys) {
      const r = await fetch(`${c.url(3)}/buckets/sq/keys/${k}?r=1`);
      expect(r.status, k).toBe(200);
      expect(await r.text()).toBe(`v-${k}`);
    }
  }, 60_000);
});
