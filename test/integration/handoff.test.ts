import { afterEach, describe, expect, it } from 'vitest';
import { DynamoClient } from '../../node/src/client/client.js';
import { metric, TestCluster, waitFor } from './harness.js';

describe('hinted handoff on a 3-node cluster', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('hands every write a killed node missed to it once it is back, and the hint queues drain', async () => {
    c = await TestCluster.start(3, ['--hint-delivery-interval-ms', '200']);
    await c.kill(2, 'SIGKILL');
    const client = new DynamoClient({ seeds: [c.url(0), c.url(1)] });
    const keys = Array.from({ length: 1000 }, (_, i) => `k${i}`);
    try {
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(keys.slice(i, i + 50).map((k) => client.put('hh', k, `v-${k}`, { w: 2 })));
      }
    } finally {
      await client.close();
    }
    const pending = () =>
      metric(
        [0, 1].map((i) => c!.url(i)),
        /^dynamo_hints_pending\{.*target="n3"/,
      );
    // Hints are stored just after each write is acknowledged.
    await waitFor('1000 hints stored', async () => (await pending()) === 1000);

    const restarted = Date.now();
    await c.startNode(2);
    await waitFor('hints delivered', async () => (await pending()) === 0, 20_000);
    const drainSeconds = (Date.now() - restarted) / 1000;
    expect(
      await metric(
        [0, 1].map((i) => c!.url(i)),
        /^dynamo_hints_delivered_total\{.*target="n3"/,
      ),
    ).toBe(1000);

    // n3 alone (its peers stopped) now serves every write it missed.
    await c.kill(0);
    await c.kill(1);
    for (const k of keys) {
      const r = await fetch(`${c.url(2)}/buckets/hh/keys/${k}?r=1`);
      expect(r.status, k).toBe(200);
      expect(await r.text()).toBe(`v-${k}`);
    }
    console.log(`hinted handoff: 1000 hints delivered ${drainSeconds.toFixed(1)} s after restart`);
  }, 60_000);

  it('keeps hints across a restart of the node holding them', async () => {
    c = await TestCluster.start(3, ['--hint-delivery-interval-ms', '200']);
    await c.kill(2);
    for (let i = 0; i < 20; i++) {
      expect(
        (await fetch(`${c.url(0)}/buckets/hh/keys/d${i}?w=2`, { method: 'PUT', body: `d${i}` })).status,
      ).toBe(204);
    }
    await waitFor(
      '20 hints stored',
      async () =>
        (await metric(
          [0].map((i) => c!.url(i)),
          /^dynamo_hints_pending\{.*target="n3"/,
        )) === 20,
    );
    await c.kill(0, 'SIGKILL'); // the coordinator that holds the hints crashes
    await c.startNode(0);
    expect(
      await metric(
        [0].map((i) => c!.url(i)),
        /^dynamo_hints_pending\{.*target="n3"/,
      ),
    ).toBe(20);
    await c.startNode(2);
    await waitFor(
      'hints delivered',
      async () =>
        (await metric(
          [0].map((i) => c!.url(i)),
          /^dynamo_hints_pending\{.*target="n3"/,
        )) === 0,
    );
    await c.kill(0);
    await c.kill(1);
    for (let i = 0; i < 20; i++)
      expect(await (await fetch(`${c.url(2)}/buckets/hh/keys/d${i}?r=1`)).text()).toBe(`d${i}`);
  }, 60_000);
});
