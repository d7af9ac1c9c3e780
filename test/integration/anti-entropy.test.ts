import { afterEach, describe, expect, it } from 'vitest';
import { metric, TestCluster, waitFor } from './harness.js';

describe('Merkle anti-entropy on a 3-node cluster', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('restores every key a node missed while down (hints expired), moving only what it lacks', async () => {
    c = await TestCluster.start(3, ['--anti-entropy-interval-ms', '300', '--hint-window-ms', '1000']);
    const keys = 500;
    const value = (i: number) => `value-${i}-`.padEnd(1000, 'x');
    // Quiet cluster: trees agree, nothing moves.
    const quiet = () =>
      Promise.all([0, 1, 2].map((i) => metric(c!.url(i), /^dynamo_merkle_bytes_transferred_total/)));
    const before = await quiet();
    await new Promise((r) => setTimeout(r, 1000));
    expect(await quiet()).toEqual(before);

    await c.kill(2);
    for (let i = 0; i < keys; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          fetch(`${c!.url(0)}/buckets/ae/keys/k${i + j}?w=2`, { method: 'PUT', body: value(i + j) }).then(
            (r) => expect(r.status).toBe(204),
          ),
        ),
      );
    }
    // Let the hints expire so only anti-entropy can bring n3 up to date.
    await new Promise((r) => setTimeout(r, 1200));
    const restarted = Date.now();
    await c.startNode(2);
    await waitFor(
      'n3 holds every key again',
      async () => (await metric(c!.url(2), /^dynamo_storage_keys/)) === keys,
      30_000,
    );
    const seconds = (Date.now() - restarted) / 1000;
    const moved = (
      await Promise.all([0, 1, 2].map((i) => metric(c!.url(i), /^dynamo_merkle_bytes_transferred_total/)))
    ).reduce((a, b) => a + b, 0);
    const dataBytes = keys * 1000;
    // Whichever side ran the exchanges (n3's peers may refill it before it runs one itself), they count every key.
    const repaired = await Promise.all(
      [0, 1, 2].map((i) => metric(c!.url(i), /^dynamo_merkle_keys_repaired_total/)),
    );
    expect(repaired.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(keys);
    // Each missing key moves at most once per exchange direction with each of the two peers (4 times),
    // plus the objects' encoding overhead; never the whole data set over and over.
    expect(moved).toBeGreaterThanOrEqual(dataBytes);
    expect(moved).toBeLessThanOrEqual(dataBytes * 4 * 1.1);
    console.log(
      `anti-entropy: ${keys} keys (${dataBytes} value bytes) restored in ${seconds.toFixed(1)} s, ${moved} object bytes moved (${(moved / dataBytes).toFixed(2)}x)`,
    );

    await c.kill(0);
    await c.kill(1);
    for (let i = 0; i < keys; i++) {
      const r = await fetch(`${c.url(2)}/buckets/ae/keys/k${i}?r=1`);
      expect(r.status, `k${i}`).toBe(200);
      expect(await r.text()).toBe(value(i));
    }
  }, 90_000);

  it('repairs the few keys a replica missed and reports the divergence', async () => {
    c = await TestCluster.start(3, ['--anti-entropy-interval-ms', '300', '--hint-window-ms', '1000']);
    for (let i = 0; i < 200; i++)
      await fetch(`${c.url(0)}/buckets/ae/keys/base${i}?w=all`, { method: 'PUT', body: 'base' });
    await c.kill(2);
    for (let i = 0; i < 10; i++)
      await fetch(`${c.url(0)}/buckets/ae/keys/missed${i}?w=2`, { method: 'PUT', body: 'new' });
    // Let the hints expire so only anti-entropy can bring n3 up to date.
    await new Promise((r) => setTimeout(r, 1200));
    await c.startNode(2);
    await waitFor(
      'n3 has the 10 missed keys',
      async () => (await metric(c!.url(2), /^dynamo_storage_keys/)) === 210,
      30_000,
    );
    const repaired = await Promise.all(
      [0, 1, 2].map((i) => metric(c!.url(i), /^dynamo_merkle_keys_repaired_total/)),
    );
    expect(repaired.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(10);
    expect(repaired.reduce((a, b) => a + b, 0)).toBeLessThan(60); // the 200 agreeing keys are not touched
    const urls = [0, 1, 2].map((i) => c!.url(i));
    const moved = await metric(urls, /^dynamo_merkle_bytes_transferred_total/);
    console.log(`anti-entropy: 10 divergent keys of 210 repaired, ${moved} object bytes moved`);
  }, 90_000);

  it('restarts cleanly without a scan of the store (the key index saved at shutdown) and still repairs', async () => {
    c = await TestCluster.start(3, ['--anti-entropy-interval-ms', '300', '--hint-window-ms', '1000']);
    for (let i = 0; i < 300; i++)
      await fetch(`${c.url(0)}/buckets/ae/keys/base${i}?w=all`, { method: 'PUT', body: 'base' });
    const scans = (i: number) => metric(c!.url(i), /^dynamo_merkle_rebuilds_total\{.*source="store"/);
    await waitFor('n3 built its trees', async () => (await scans(2)) === 1, 30_000);
    await c.kill(2, 'SIGTERM');
    for (let i = 0; i < 20; i++)
      await fetch(`${c.url(0)}/buckets/ae/keys/missed${i}?w=2`, { method: 'PUT', body: 'new' });
    await new Promise((r) => setTimeout(r, 1200));
    await c.startNode(2);
    await waitFor(
      'n3 has the 20 keys it missed',
      async () => (await metric(c!.url(2), /^dynamo_storage_keys/)) === 320,
      30_000,
    );
    // Its trees came from the saved index, re-derived for the ring: no scan of its store.
    expect(await scans(2)).toBe(0);
    expect(await metric(c.url(2), /^dynamo_merkle_rebuilds_total\{.*source="index"/)).toBeGreaterThanOrEqual(
      1,
    );
    expect(await metric(c.url(2), /^dynamo_merkle_index_keys/)).toBe(320);
  }, 90_000);
});
