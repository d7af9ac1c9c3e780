import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DynamoClient } from '../../node/src/client/client.js';
import {
  InvalidRequestError,
  NotFoundError,
  QuorumNotMetError,
  TooManySiblingsError,
  UnresolvedSiblingsError,
  ValueTooLargeError,
} from '../../node/src/errors.js';
import { metric, TestCluster } from './harness.js';

const text = (b: Buffer) => b.toString('utf8');

describe('DynamoClient against a 3-node cluster', () => {
  let c: TestCluster;
  let client: DynamoClient;
  beforeAll(async () => {
    c = await TestCluster.start(3);
    client = new DynamoClient({ seeds: [c.url(1)] });
  });
  afterAll(async () => {
    await client?.close();
    await c?.stop();
  });

  it('puts, gets and deletes, learning the ring from one seed', async () => {
    const { context } = await client.put('users', 'ada', 'Ada Lovelace', { contentType: 'text/plain' });
    expect(context).toBeTruthy();
    const got = await client.get('users', 'ada');
    expect('value' in got && text(got.value)).toBe('Ada Lovelace');
    expect('value' in got && got.contentType).toBe('text/plain');
    expect((await client.ring()).members.map((m) => m.http).sort()).toEqual(c.nodes.map((n) => n.url).sort());
    await client.delete('users', 'ada', { context: got.context });
    const err = await client.get('users', 'ada').catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.context).toBeTruthy(); // a tombstone's context, to write over the delete
  });

  it('returns siblings with a context, and update() resolves them with the resolve function', async () => {
    const other = new DynamoClient({ seeds: [c.url(2)], routing: 'any' });
    try {
      await client.put('carts', 'c1', 'apple');
      await other.put('carts', 'c1', 'pear'); // no context: concurrent
      const read = await client.get('carts', 'c1');
      expect('siblings' in read && read.siblings.map((s) => text(s.value)).sort()).toEqual(['apple', 'pear']);

      const union = (siblings: Array<{ value: Buffer }>) =>
        [...new Set(siblings.flatMap((s) => text(s.value).split(',')))].sort().join(',');
      const updated = await client.update('carts', 'c1', (cur) => `${text(cur!)},plum`, { resolve: union });
      expect(text(updated.value)).toBe('apple,pear,plum');
      const after = await other.get('carts', 'c1');
      expect('value' in after && text(after.value)).toBe('apple,pear,plum');
    } finally {
      await other.close();
    }
  });

  it('update() on a missing key starts from undefined, and refuses siblings without a resolver', async () => {
    const first = await client.update('counters', 'n', (cur) => String(Number(cur ? text(cur) : '0') + 1));
    expect(text(first.value)).toBe('1');
    await client.put('counters', 'n', '7'); // blind: concurrent with '1'
    await expect(client.update('counters', 'n', (cur) => cur!)).rejects.toBeInstanceOf(
      UnresolvedSiblingsError,
    );
  });

  it('keeps every racing update, and a resolving update afterwards sees them all', async () => {
    // A grow-only set of tokens: each update adds one; the resolver takes the union.
    const add = (token: string) => (cur: Buffer | undefined) =>
      JSON.stringify([...new Set([...(cur ? (JSON.parse(text(cur)) as string[]) : []), token])].sort());
    const resolve = (siblings: Array<{ value: Buffer }>) =>
      JSON.stringify([...new Set(siblings.flatMap((s) => JSON.parse(text(s.value)) as string[]))].sort());
    const clients = [0, 1, 2].map((i) => new DynamoClient({ seeds: [c.url(i)] }));
    try {
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          clients[i % 3]!.update('sets', 'tokens', add(`t${i}`), { resolve }),
        ),
      );
      expect(results.filter((r) => r.resolved).length).toBeGreaterThan(0);
      const last = await client.update('sets', 'tokens', add('final'), { resolve, r: 'all', w: 'all' });
      expect(last.resolved).toBe(true);
      expect((JSON.parse(text(last.value)) as string[]).length).toBe(31);
    } finally {
      await Promise.all(clients.map((x) => x.close()));
    }
  });

  it('writes values with a time-to-live', async () => {
    await client.put('sessions', 's', 'token', { ttl: 1, w: 'all' });
    const got = await client.get('sessions', 's');
    expect('value' in got && got.expiresAt!.getTime()).toBeGreaterThan(Date.now());
    await new Promise((r) => setTimeout(r, 1100));
    await expect(client.get('sessions', 's')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('turns error answers into typed errors', async () => {
    await expect(client.get('bad bucket', 'k')).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(client.put('b', 'k', 'x', { w: 7 })).rejects.toMatchObject({ code: 'invalid_quorum' });
    await expect(client.put('b', 'big', Buffer.alloc(1024 * 1024 + 1))).rejects.toBeInstanceOf(
      ValueTooLargeError,
    );
    await expect(client.setProps('b', { n: 0 })).rejects.toBeInstanceOf(InvalidRequestError);
    expect(() => new DynamoClient({ seeds: [] })).toThrow(InvalidRequestError);
  });
});

describe('the package', () => {
  it('exports DynamoClient and the typed errors under its own name', async () => {
    // Resolved through package.json "exports", as an application's import is (the built dist/).
    const pkg = await import('dynamo-kv');
    const client = new pkg.DynamoClient({ seeds: ['http://127.0.0.1:9'], retries: 0 });
    await expect(client.get('b', 'k')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await client.close();
    expect(new pkg.QuorumNotMetError('put', 2, 1)).toMatchObject({ status: 503, needed: 2, got: 1 });
  });
});

describe('DynamoClient routing and failures', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('sends each request straight to a replica, so coordinators forward nothing', async () => {
    c = await TestCluster.start(4);
    const routed = new DynamoClient({ seeds: [c.url(0)] });
    const any = new DynamoClient({ seeds: [c.url(0)], routing: 'any' });
    try {
      await routed.setProps('one', { n: 1, r: 1, w: 1 });
      const forwarded = () =>
        metric(
          c!.nodes.map((n) => n.url),
          /^dynamo_peer_request_duration_seconds_count\{.*op="put"/,
        );
      const before = await forwarded();
      for (let i = 0; i < 40; i++) await routed.put('one', `k${i}`, 'v');
      expect(await forwarded()).toBe(before); // the client always reached the key's only replica
      for (let i = 0; i < 40; i++) await any.put('one', `k${i}`, 'v2', { context: undefined });
      expect(await forwarded()).toBeGreaterThan(before + 10); // about 3 in 4 land on a non-replica
    } finally {
      await routed.close();
      await any.close();
    }
  });

  it('keeps reading and writing through the other nodes when one is killed, and reports quorum failures', async () => {
    c = await TestCluster.start(3);
    const client = new DynamoClient({ seeds: [c.url(0), c.url(1)], timeoutMs: 2000 });
    try {
      for (let i = 0; i < 20; i++) await client.put('f', `k${i}`, `v${i}`, { w: 'all' });
      await c.kill(0);
      for (let i = 0; i < 20; i++) {
        const got = await client.get('f', `k${i}`);
        expect('value' in got && text(got.value)).toBe(`v${i}`);
        await client.put('f', `k${i}`, `w${i}`, { context: got.context });
      }
      const err = await client.put('f', 'k0', 'x', { w: 'all' }).catch((e) => e);
      expect(err).toBeInstanceOf(QuorumNotMetError);
      expect(err).toMatchObject({ needed: 3, got: 2 });
    } finally {
      await client.close();
    }
  });

  it('refuses writes past --max-siblings with 409 and a typed error, and accepts the resolving write', async () => {
    c = await TestCluster.start(3, ['--max-siblings', '3']);
    const client = new DynamoClient({ seeds: [c.url(0)] });
    try {
      for (const v of ['a', 'b', 'c']) await client.put('limits', 'k', v); // blind: three siblings
      const raw = await fetch(`${c.url(1)}/buckets/limits/keys/k`, { method: 'PUT', body: 'd' });
      expect(raw.status).toBe(409);
      expect(await raw.json()).toMatchObject({ error: 'too_many_siblings', siblings: 4, limit: 3 });
      await expect(client.put('limits', 'k', 'e')).rejects.toBeInstanceOf(TooManySiblingsError);
      const read = await client.get('limits', 'k', { r: 'all' });
      expect('siblings' in read && read.siblings.map((s) => text(s.value)).sort()).toEqual(['a', 'b', 'c']);
      await client.put('limits', 'k', 'abc', { context: read.context });
      const after = await client.get('limits', 'k');
      expect('value' in after && text(after.value)).toBe('abc');
    } finally {
      await client.close();
    }
  });
});
