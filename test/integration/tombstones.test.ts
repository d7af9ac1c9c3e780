import { afterEach, describe, expect, it } from 'vitest';
import { metric, QUICK_REAP, TestCluster, waitFor } from './harness.js';

const keysOn = (url: string) => metric(url, /^dynamo_storage_keys/);

describe('tombstone garbage collection on a 3-node cluster', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('removes deleted keys from every replica after the grace period', async () => {
    // A longer grace here, so the tombstones are surely still there when first counted.
    c = await TestCluster.start(3, [
      '--tombstone-grace-ms',
      '3000',
      '--hint-window-ms',
      '3000',
      '--tombstone-reap-interval-ms',
      '200',
    ]);
    for (let i = 0; i < 20; i++)
      await fetch(`${c.url(0)}/buckets/t/keys/k${i}?w=all`, { method: 'PUT', body: 'v' });
    for (let i = 0; i < 20; i++) {
      const read = await fetch(`${c.url(1)}/buckets/t/keys/k${i}`);
      const context = read.headers.get('x-dynamo-context')!;
      await fetch(`${c.url(1)}/buckets/t/keys/k${i}?w=all`, {
        method: 'DELETE',
        headers: { 'X-Dynamo-Context': context },
      });
    }
    for (let i = 0; i < 3; i++) expect(await keysOn(c.url(i))).toBe(20); // tombstones, within grace
    for (let i = 0; i < 3; i++)
      await waitFor(`n${i + 1} reaped`, async () => (await keysOn(c!.url(i))) === 0);
    expect((await fetch(`${c.url(2)}/buckets/t/keys/k0?r=all`)).status).toBe(404);
  });

  it('keeps a tombstone while a replica lacks it, so the deleted value cannot come back', async () => {
    c = await TestCluster.start(3, [...QUICK_REAP, '--anti-entropy-interval-ms', '300']);
    await fetch(`${c.url(0)}/buckets/t/keys/zombie?w=all`, { method: 'PUT', body: 'old value' });
    await c.kill(2); // n3 keeps the old value and misses the delete
    const read = await fetch(`${c.url(0)}/buckets/t/keys/zombie`);
    await fetch(`${c.url(0)}/buckets/t/keys/zombie?w=2`, {
      method: 'DELETE',
      headers: { 'X-Dynamo-Context': read.headers.get('x-dynamo-context')! },
    });
    await new Promise((r) => setTimeout(r, 2500)); // well past the grace period and the hint window
    expect(await keysOn(c.url(0))).toBe(1); // not reaped: n3 could not confirm
    await c.startNode(2);
    // Anti-entropy hands n3 the tombstone; then all three agree and the key goes everywhere.
    for (let i = 0; i < 3; i++)
      await waitFor(`n${i + 1} reaped`, async () => (await keysOn(c!.url(i))) === 0, 20_000);
    for (let i = 0; i < 3; i++)
      expect((await fetch(`${c.url(i)}/buckets/t/keys/zombie?r=all`)).status).toBe(404);
  }, 60_000);
});
