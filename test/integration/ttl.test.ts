import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, waitFor } from './harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('time-to-live on a 3-node cluster', () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await TestCluster.start(3, ['--ttl-sweep-interval-ms', '200']);
  });
  afterAll(() => c?.stop());

  it('serves a value until its ttl passes, then reads it as absent on every node', async () => {
    const url = (i: number) => `${c.url(i)}/buckets/sessions/keys/s1`;
    expect((await fetch(`${url(0)}?ttl=1&w=all`, { method: 'PUT', body: 'token' })).status).toBe(204);
    const expiries = new Set<string | null>();
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${url(i)}?r=1`);
      expect(r.status).toBe(200);
      expiries.add(r.headers.get('x-dynamo-expires'));
    }
    expect(expiries.size).toBe(1); // the expiry is part of the version: every replica reports the same
    expect(Date.parse([...expiries][0]!)).toBeGreaterThan(Date.now());
    await sleep(1100);
    for (let i = 0; i < 3; i++) expect((await fetch(`${url(i)}?r=1`)).status).toBe(404);
  });

  it('applies the bucket default ttl and lets a request override it', async () => {
    const props = await fetch(`${c.url(0)}/buckets/short/props`, { method: 'PUT', body: '{"ttl":1}' });
    expect(await props.json()).toMatchObject({ ttl: 1 });
    await fetch(`${c.url(1)}/buckets/short/keys/default`, { method: 'PUT', body: 'x' });
    await fetch(`${c.url(1)}/buckets/short/keys/forever?ttl=0`, { method: 'PUT', body: 'y' });
    await sleep(1100);
    expect((await fetch(`${c.url(2)}/buckets/short/keys/default`)).status).toBe(404);
    expect(await (await fetch(`${c.url(2)}/buckets/short/keys/forever`)).text()).toBe('y');
  });

  it('purges expired values from disk in the background', async () => {
    await fetch(`${c.url(0)}/buckets/purge/keys/k?ttl=1`, { method: 'PUT', body: 'bytes to reclaim' });
    await waitFor('purge on every node', async () => {
      const counts = await Promise.all(
        [0, 1, 2].map(async (i) => {
          const text = await (await fetch(`${c.url(i)}/metrics`)).text();
          const line = text.split('\n').find((l) => l.startsWith('dynamo_expired_values_purged_total'));
          return Number(line?.split(' ').pop() ?? 0);
        }),
      );
      return counts.every((n) => n >= 1);
    });
  });

  it('rejects a malformed ttl', async () => {
    for (const ttl of ['-1', 'abc', '1.5', '999999999999']) {
      const r = await fetch(`${c.url(0)}/buckets/sessions/keys/bad?ttl=${ttl}`, { method: 'PUT', body: 'x' });
      expect(r.status, ttl).toBe(400);
      expect(await r.json()).toMatchObject({ error: 'invalid_ttl' });
    }
    const props = await fetch(`${c.url(0)}/buckets/sessions/props`, { method: 'PUT', body: '{"ttl":-5}' });
    expect(props.status).toBe(400);
  });
});
