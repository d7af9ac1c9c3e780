import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { metric, TestCluster, waitFor } from './harness.js';

const keyUrl = (base: string, bucket: string, key: string, query = '') =>
  `${base}/buckets/${bucket}/keys/${encodeURIComponent(key)}${query}`;

async function put(url: string, value: string | Buffer, headers: Record<string, string> = {}) {
  return fetch(url, { method: 'PUT', body: value, headers: { 'Content-Type': 'text/plain', ...headers } });
}

interface SiblingsBody {
  context: string;
  siblings: Array<{ value: string; contentType: string; lastModified: string }>;
}

const siblingValues = (body: SiblingsBody) =>
  body.siblings.map((s) => Buffer.from(s.value, 'base64').toString()).sort();

describe('a 3-node cluster on loopback', () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await TestCluster.start(3);
  });
  afterAll(() => c?.stop());

  it('stores, reads and deletes a value through every node', async () => {
    for (let i = 0; i < 3; i++) {
      const key = `round-trip-${i}`;
      const w = await put(keyUrl(c.url(i), 'rt', key), `value ${i}`, { 'Content-Type': 'text/x-test' });
      expect(w.status).toBe(204);
      expect(w.headers.get('x-dynamo-context')).toBeTruthy();
      for (let j = 0; j < 3; j++) {
        const r = await fetch(keyUrl(c.url(j), 'rt', key));
        expect(r.status).toBe(200);
        expect(r.headers.get('content-type')).toBe('text/x-test');
        expect(await r.text()).toBe(`value ${i}`);
      }
      const context = (await fetch(keyUrl(c.url(i), 'rt', key))).headers.get('x-dynamo-context')!;
      const d = await fetch(keyUrl(c.url((i + 1) % 3), 'rt', key), {
        method: 'DELETE',
        headers: { 'X-Dynamo-Context': context },
      });
      expect(d.status).toBe(204);
      for (let j = 0; j < 3; j++) {
        const r = await fetch(keyUrl(c.url(j), 'rt', key));
        expect(r.status).toBe(404);
        expect(await r.json()).toMatchObject({ error: 'not_found' });
      }
    }
  });

  it('returns a never-written key as 404 with a JSON error', async () => {
    const r = await fetch(keyUrl(c.url(0), 'rt', 'never-written'));
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ error: 'not_found' });
  });

  it('returns concurrent writes as siblings and collapses them when written with their context', async () => {
    const url = (i: number) => keyUrl(c.url(i), 'conflicts', 'cart');
    expect((await put(url(0), 'a')).status).toBe(204);
    expect((await put(url(1), 'b')).status).toBe(204); // no context: concurrent with 'a'
    const r = await fetch(url(2));
    expect(r.status).toBe(300);
    const body = (await r.json()) as SiblingsBody;
    expect(siblingValues(body)).toEqual(['a', 'b']);
    expect(
      body.siblings.every((s) => s.contentType === 'text/plain' && !Number.isNaN(Date.parse(s.lastModified))),
    ).toBe(true);

    expect((await put(url(2), 'a+b', { 'X-Dynamo-Context': body.context })).status).toBe(204);
    for (let i = 0; i < 3; i++) {
      const resolved = await fetch(url(i));
      expect(resolved.status).toBe(200);
      expect(await resolved.text()).toBe('a+b');
    }
  });

  it('keeps both writes made with the same context as siblings', async () => {
    const url = (i: number) => keyUrl(c.url(i), 'conflicts', 'same-context');
    await put(url(0), 'v0');
    const context = (await fetch(url(0))).headers.get('x-dynamo-context')!;
    await put(url(1), 'from-device-1', { 'X-Dynamo-Context': context });
    await put(url(2), 'from-device-2', { 'X-Dynamo-Context': context });
    const r = await fetch(url(0));
    expect(r.status).toBe(300);
    expect(siblingValues((await r.json()) as SiblingsBody)).toEqual(['from-device-1', 'from-device-2']);
  });

  it('answers returnbody=true with the stored value', async () => {
    const r = await put(keyUrl(c.url(0), 'rt', 'returnbody', '?returnbody=true'), 'echo');
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('echo');
  });

  it('rejects bad input with JSON errors and keeps serving', async () => {
    const base = c.url(1);
    const big = Buffer.alloc(1024 * 1024 + 1, 1);
    const tooBig = await put(keyUrl(base, 'bad', 'big'), big);
    expect(tooBig.status).toBe(413);
    expect(await tooBig.json()).toMatchObject({ error: 'value_too_large' });
    expect((await put(keyUrl(base, 'bad', 'max'), Buffer.alloc(1024 * 1024, 2))).status).toBe(204);

    const goodContext = (await put(keyUrl(base, 'bad', 'ctx'), 'x')).headers.get('x-dynamo-context')!;
    for (const context of ['garbage!', 'AAAA', goodContext.slice(0, -2), `${goodContext.slice(0, -1)}A`]) {
      if (context === goodContext) continue;
      const r = await put(keyUrl(base, 'bad', 'ctx'), 'y', { 'X-Dynamo-Context': context });
      expect(r.status).toBe(400);
      expect(await r.json()).toMatchObject({ error: 'invalid_context' });
    }
    expect(await (await fetch(keyUrl(base, 'bad', 'ctx'))).text()).toBe('x'); // nothing written by the refused requests

    for (const q of ['?r=0', '?r=4', '?r=abc', '?r=1.5']) {
      const r = await fetch(keyUrl(base, 'bad', 'ctx', q));
      expect(r.status).toBe(400);
      expect(await r.json()).toMatchObject({ error: 'invalid_quorum' });
    }
    for (const q of ['?w=0', '?w=all1', '?w=-1']) {
      const r = await put(keyUrl(base, 'bad', 'ctx', q), 'z');
      expect(r.status).toBe(400);
      expect(await r.json()).toMatchObject({ error: 'invalid_quorum' });
    }
    for (const props of [
      '{"n":0}',
      '{"r":4}',
      '{"n":2,"w":3}',
      '{"foo":1}',
      '{"conflict":"maybe"}',
      'not json',
      '[]',
    ]) {
      const r = await fetch(`${base}/buckets/bad/props`, { method: 'PUT', body: props });
      expect(r.status, props).toBe(400);
      expect(await r.json()).toMatchObject({ error: 'invalid_props' });
    }
    const badBucket = await fetch(`${base}/buckets/a%20b/keys/k`);
    expect(badBucket.status).toBe(400);
    expect(await badBucket.json()).toMatchObject({ error: 'invalid_bucket' });
    const badKey = await fetch(`${base}/buckets/b/keys/%E0%A4%A`);
    expect(badKey.status).toBe(400);
    const staticRemove = await fetch(`${base}/admin/members/n3/remove`, { method: 'POST' });
    expect(staticRemove.status).toBe(400);
    expect(await staticRemove.json()).toMatchObject({ error: 'static_membership' });
    const unknown = await fetch(`${base}/nope`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: 'not_found' });

    const body = JSON.stringify(await (await fetch(`${base}/buckets/bad/props`)).json());
    expect(body).toBe(JSON.stringify({ n: 3, r: 2, w: 2, conflict: 'siblings', ttl: 0 }));
    expect((await put(keyUrl(base, 'bad', 'after'), 'still serving')).status).toBe(204);
    expect(await (await fetch(keyUrl(c.url(2), 'bad', 'after'))).text()).toBe('still serving');
  });

  it('applies bucket props set through one node on every node', async () => {
    const set = await fetch(`${c.url(0)}/buckets/lwwbucket/props`, {
      method: 'PUT',
      body: '{"conflict":"lww"}',
    });
    expect(set.status).toBe(200);
    for (let i = 0; i < 3; i++) {
      expect(await (await fetch(`${c.url(i)}/buckets/lwwbucket/props`)).json()).toEqual({
        n: 3,
        r: 2,
        w: 2,
        conflict: 'lww',
        ttl: 0,
      });
    }
    await put(keyUrl(c.url(1), 'lwwbucket', 'k'), 'older');
    await new Promise((r) => setTimeout(r, 5));
    await put(keyUrl(c.url(2), 'lwwbucket', 'k'), 'newer');
    const r = await fetch(keyUrl(c.url(0), 'lwwbucket', 'k'));
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('newer');
  });

  it('exports the request metrics of the contract', async () => {
    const text = await (await fetch(`${c.url(0)}/metrics`)).text();
    for (const name of [
      'dynamo_requests_total',
      'dynamo_request_duration_seconds_bucket',
      'dynamo_siblings_bucket',
      'dynamo_storage_keys',
      'dynamo_storage_bytes',
    ]) {
      expect(text).toContain(name);
    }
    expect(await metric(c.url(0), /^dynamo_requests_total\{.*op="put".*code="204"/)).toBeGreaterThan(0);
  });
});

describe('a 3-node cluster with failures', () => {
  let c: TestCluster;
  afterEach(() => c?.stop());

  it('refuses w=3 with 503 needed/got when a node is killed, while w=2 and r=2 succeed', async () => {
    c = await TestCluster.start(3);
    await c.kill(2);
    const url = keyUrl(c.url(0), 'q', 'k');
    const w3 = await put(`${url}?w=3`, 'x');
    expect(w3.status).toBe(503);
    expect(await w3.json()).toMatchObject({ error: 'quorum_not_met', needed: 3, got: 2 });
    expect((await put(`${url}?w=2`, 'y', { 'X-Dynamo-Context': '' })).status).toBe(204);
    const r2 = await fetch(`${url}?r=2`);
    expect([200, 300]).toContain(r2.status);
    const r3 = await fetch(`${url}?r=all`);
    expect(r3.status).toBe(503);
    expect(await r3.json()).toMatchObject({ needed: 3, got: 2 });
    expect(await metric(c.url(0), /^dynamo_quorum_failures_total\{.*op="put"/)).toBeGreaterThanOrEqual(1);
  });

  it('a node restarted after SIGKILL still has every value it acknowledged', async () => {
    c = await TestCluster.start(3);
    const keys = Array.from({ length: 200 }, (_, i) => `durable-${i}`);
    await Promise.all(
      keys.map(async (k) => expect((await put(keyUrl(c.url(0), 'd', k, '?w=3'), `v-${k}`)).status).toBe(204)),
    );
    await c.kill(2, 'SIGKILL');
    await c.startNode(2);
    await c.kill(0);
    await c.kill(1);
    for (const k of keys) {
      const r = await fetch(keyUrl(c.url(2), 'd', k, '?r=1'));
      expect(r.status, k).toBe(200);
      expect(await r.text()).toBe(`v-${k}`);
    }
  });

  it('read repair brings a replica that missed a write up to date', async () => {
    c = await TestCluster.start(3);
    await c.kill(2);
    expect((await put(keyUrl(c.url(0), 'rr', 'k', '?w=2'), 'missed by n3')).status).toBe(204);
    await c.startNode(2);
    // The coordinator may still be backing off from the dead connection: read until all three answer.
    await waitFor(
      'a read that reaches all replicas',
      async () => (await fetch(keyUrl(c.url(0), 'rr', 'k', '?r=3'))).ok,
    );
    await waitFor('read repair', async () => (await metric(c.url(0), /^dynamo_read_repairs_total/)) >= 1);
    await c.kill(0);
    await c.kill(1);
    const r = await fetch(keyUrl(c.url(2), 'rr', 'k', '?r=1'));
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('missed by n3');
  });
});
