/**
 * Anti-entropy (repair/anti-entropy.ts) on real LevelDB replicas over the in-memory network: key lists
 * paged under a byte budget (a leaf split across pages, every reply under the budget), trees built in
 * the background (not_ready meanwhile), and trees re-derived from the key index on a new ring — with
 * writes landing during the scan and during the re-derivation — equal to trees built by a fresh scan.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BucketPropsTable } from '../../node/src/buckets/props.js';
import { RemoteError } from '../../node/src/errors.js';
import type { Member, MemberState, Membership } from '../../node/src/membership/membership.js';
import {
  type AeKeysReply,
  AntiEntropy,
  type AntiEntropyRequest,
  MerkleTree,
} from '../../node/src/repair/index.js';
import type { PutReply, ReplicaRequest } from '../../node/src/replica/messages.js';
import { Replica } from '../../node/src/replica/replica.js';
import { generateTokens, hashKey, Ring } from '../../node/src/ring/index.js';
import { ObjectStore } from '../../node/src/storage/store.js';
import { InMemoryNetwork } from '../../node/src/transport/memory.js';

const BUCKET = 'ae';
const log = pino({ level: 'silent' });
const packr = new Packr({ useRecords: false, moreTypes: false });
const dirs: string[] = [];
const stores: ObjectStore[] = [];

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Static members whose ring can be replaced (by an equal one, or one of other members). */
class TestMembership implements Membership {
  readonly cluster = 'test';
  private current: Ring;

  constructor(
    readonly self: string,
    private list: Member[],
  ) {
    this.current = new Ring(list);
  }

  setMembers(list: Member[]): void {
    this.list = list;
    this.current = new Ring(list);
  }

  ring(): Ring {
    return this.current;
  }

  pendingRing(): undefined {
    return undefined;
  }

  members(): readonly Member[] {
    return this.list;
  }

  address(id: string): string | undefined {
    return this.list.find((m) => m.id === id)?.address;
  }

  state(id: string): MemberState {
    return this.list.some((m) => m.id === id) ? 'up' : 'removed';
  }

  remove(): void {}

  learnHttp(): void {}
}

const member = (id: string): Member => ({ id, address: `${id}:1`, tokens: generateTokens(id, 16) });

interface TestNode {
  id: string;
  dir: string;
  store: ObjectStore;
  replica: Replica;
  membership: TestMembership;
  ae: AntiEntropy;
  props: BucketPropsTable;
  rebuilds: Array<{ keys: number; scannedStore: boolean }>;
  /** A new AntiEntropy on the same store (as after a restart), replacing ae. */
  newAe(): AntiEntropy;
}

async function cluster(
  ids: string[],
  { n = 2, depth = 2, keysReplyBytes }: { n?: number; depth?: number; keysReplyBytes?: number } = {},
) {
  const network = new InMemoryNetwork();
  const replies: Array<{ to: string; bytes: number; reply: AeKeysReply }> = [];
  const nodes: TestNode[] = [];
  for (const id of ids) {
    const dir = mkdtempSync(join(tmpdir(), `dynamo-ae-${id}-`));
    dirs.push(dir);
    const store = await ObjectStore.open(dir, { syncWrites: false });
    stores.push(store);
    const props = await BucketPropsTable.load(store, { n, r: 1, w: 1, conflict: 'siblings', ttl: 0 });
    const replica = new Replica(store, props, {
      self: id,
      clockMaxEntries: 50,
      clockPruneAgeMs: 86_400_000,
      maxSiblings: 100,
    });
    const membership = new TestMembership(id, ids.map(member));
    const transport = network.transport(id);
    const node: TestNode = {
      id,
      dir,
      store,
      replica,
      membership,
      props,
      ae: undefined as never,
      rebuilds: [],
      newAe: () => {
        node.ae = new AntiEntropy({
          self: id,
          membership,
          props,
          store,
          request: (peer, req, timeoutMs) => transport.request(peer, req, timeoutMs),
          mergeLocal: (req) => replica.handle(req),
          depth,
          timeoutMs: 10_000,
          log,
          ...(keysReplyBytes ? { keysReplyBytes } : {}),
          // Small chunks, so writes land between them.
          buildChunk: 64,
          indexFile: join(dir, 'anti-entropy.index'),
          onRebuild: (keys, scannedStore) => node.rebuilds.push({ keys, scannedStore }),
        });
        return node.ae;
      },
    };
    node.newAe();
    await transport.listen(async (_from, body) => {
      const req = body as ReplicaRequest | AntiEntropyRequest;
      if (req.op === 'ae.root' || req.op === 'ae.children' || req.op === 'ae.keys') {
        const reply = node.ae.handle(req);
        if (req.op === 'ae.keys')
          replies.push({ to: id, bytes: packr.pack(reply).length, reply: reply as AeKeysReply });
        return reply;
      }
      return replica.handle(req);
    });
    nodes.push(node);
  }
  return { network, nodes, replies };
}

const value = (s: string) => ({
  value: Buffer.from(s),
  contentType: 'text/plain',
  lastModified: 1_700_000_000_000,
  deleted: false,
  expiresAt: 0,
});

/** A client write coordinated by `on`, merged into `also`. */
async function write(on: TestNode, k: string, v: string, also: TestNode[] = []): Promise<void> {
  const { obj } = (await on.replica.handle({
    op: 'put',
    b: BUCKET,
    k,
    ctx: [],
    sib: value(v),
    lww: false,
  })) as PutReply;
  for (const o of also) await o.replica.handle({ op: 'merge', b: BUCKET, k, obj, lww: false });
}

const root = (node: TestNode, peer: string) =>
  (node.ae.handle({ op: 'ae.root', from: peer }) as { root: Buffer }).root.toString('hex');

/** Every peer's tree and key listing of node equals those of a fresh build from node's store. */
async function expectSameAsFreshScan(node: TestNode, peers: string[], depth: number): Promise<void> {
  const props = await BucketPropsTable.load(node.store, { n: 2, r: 1, w: 1, conflict: 'siblings', ttl: 0 });
  const fresh = new AntiEntropy({
    self: node.id,
    membership: node.membership,
    props,
    store: node.store,
    request: async () => undefined,
    mergeLocal: async () => undefined,
    depth,
    timeoutMs: 1000,
    log,
  });
  await fresh.rebuild();
  const leaves = Array.from({ length: 2 ** depth }, (_, i) => i);
  for (const peer of peers) {
    expect(root(node, peer), `tree of ${peer}`).toBe(
      (fresh.handle({ op: 'ae.root', from: peer }) as { root: Buffer }).root.toString('hex'),
    );
    const list = (ae: AntiEntropy) =>
      (ae.handle({ op: 'ae.keys', from: peer, leaves }) as AeKeysReply).keys.map(
        ([k, p]) => `${k}=${p.toString('hex')}`,
      );
    expect(list(node.ae).sort()).toEqual(list(fresh).sort());
  }
  expect(node.ae.indexedKeys).toBe(fresh.indexedKeys);
  await fresh.stop();
}

describe('anti-entropy key lists', () => {
  it('pages every listing under the byte budget, splitting a leaf when it must, and repairs every key', async () => {
    const budget = 400;
    const { nodes, replies } = await cluster(['a', 'b'], { depth: 2, keysReplyBytes: budget });
    const [a, b] = nodes as [TestNode, TestNode];
    for (let i = 0; i < 100; i++) await write(a, `both${i}`, 'same', [b]);
    for (let i = 0; i < 60; i++) await write(a, `only-a${i}`, 'a');
    for (let i = 0; i < 40; i++) await write(b, `only-b${i}`, 'b');
    for (let i = 0; i < 10; i++) {
      await write(a, `differ${i}`, 'a');
      await write(b, `differ${i}`, 'b');
    }
    await Promise.all([a.ae.rebuild(), b.ae.rebuild()]);
    expect(root(a, 'b')).not.toBe(root(b, 'a'));

    const repaired = await a.ae.exchange('b');
    expect(repaired).toBe(60 + 40 + 10);
    expect(root(a, 'b')).toBe(root(b, 'a'));
    expect(a.store.keyCount).toBe(210);
    expect(b.store.keyCount).toBe(210);
    expect(await a.ae.exchange('b')).toBe(0);

    // The first exchange listed 4 leaves of ~200 keys in pages of at most the budget (one key may
    // exceed what is left of it, never the whole of it), some continuing inside a leaf.
    expect(replies.length).toBeGreaterThan(5);
    const largest = Math.max(...replies.map((r) => r.bytes));
    expect(largest).toBeLessThanOrEqual(budget + 64);
    expect(replies.some((r) => r.reply.next?.after !== undefined)).toBe(true);
  });

  it('lists each key of the leaves asked for exactly once across pages, in key order within a leaf', async () => {
    const { nodes } = await cluster(['a', 'b'], { depth: 3, keysReplyBytes: 150 });
    const [a] = nodes as [TestNode, TestNode];
    for (let i = 0; i < 300; i++) await write(a, `k${i}-${'é'.repeat(i % 7)}`, `v${i}`);
    await a.ae.rebuild();
    const leaves = [0, 2, 3, 5, 7];
    const tree = new MerkleTree({ start: '0'.repeat(32), end: '0'.repeat(32) }, 3);
    const leafOf = (okey: string) => tree.leafIndexOf(hashKey(BUCKET, okey.slice(BUCKET.length + 1)));
    const paged: Array<[string, Buffer]> = [];
    let rest = leaves;
    let after: string | undefined;
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(1000);
      const req: AntiEntropyRequest = { op: 'ae.keys', from: 'b', leaves: rest, ...(after ? { after } : {}) };
      const reply = a.ae.handle(req) as AeKeysReply;
      expect(reply.keys.length).toBeGreaterThan(0);
      paged.push(...reply.keys);
      if (!reply.next) break;
      rest = rest.slice(rest.indexOf(reply.next.leaf));
      after = reply.next.after;
    }
    const keys = paged.map(([k]) => k);
    expect(new Set(keys).size).toBe(keys.length);
    const expected = Array.from(
      { length: 300 },
      (_, i) => `${BUCKET}\u0000k${i}-${'é'.repeat(i % 7)}`,
    ).filter((k) => leaves.includes(leafOf(k)));
    expect(keys.sort()).toEqual(expected.sort());
    expect(expected.length).toBeGreaterThan(100);
    // Leaf by leaf in the order asked, each leaf's keys ascending.
    const order = paged.map(([k]) => [leaves.indexOf(leafOf(k)), k] as const);
    for (let i = 1; i < order.length; i++) {
      const [[l0, k0], [l1, k1]] = [order[i - 1]!, order[i]!];
      expect(l0 < l1 || (l0 === l1 && k0 < k1), `${k0} before ${k1}`).toBe(true);
    }
  });
});

describe('anti-entropy trees', () => {
  it('answers not_ready until its trees are built, and exchanges wait for them', async () => {
    const { nodes } = await cluster(['a', 'b']);
    const [a, b] = nodes as [TestNode, TestNode];
    for (let i = 0; i < 50; i++) await write(a, `k${i}`, 'v', [b]);
    expect(() => b.ae.handle({ op: 'ae.root', from: 'a' })).toThrow(/being built/);
    await expect(a.ae.exchange('b')).rejects.toBeInstanceOf(RemoteError);
    await b.ae.rebuild();
    expect(await a.ae.exchange('b')).toBe(0);
    expect(a.rebuilds).toEqual([{ keys: 50, scannedStore: true }]);
  });

  it('takes writes landing during the scan of the store: the trees equal a fresh scan', async () => {
    const { nodes } = await cluster(['a', 'b'], { depth: 6 });
    const [a] = nodes as [TestNode, TestNode];
    for (let i = 0; i < 3000; i++) await write(a, `k${i}`, 'old');
    const building = a.ae.rebuild();
    // Updates, new keys and deletes (as the reaper makes them) race the scan, on the keys it reads last
    // (it reads in key order), so it meets their older versions in its snapshot.
    const names = Array.from({ length: 3000 }, (_, i) => `k${i}`).sort((x, y) => (x < y ? 1 : -1));
    const raced = { deletes: 0, updates: 0 };
    await Promise.all([
      building,
      (async () => {
        for (const [i, name] of names.entries()) {
          if (a.ae.built) break;
          if (i % 3 === 0) {
            await a.store.deleteUnless(BUCKET, name, () => false);
            if (!a.ae.built) raced.deletes++;
          } else if (i % 3 === 1) {
            await write(a, name, 'new');
            if (!a.ae.built) raced.updates++;
          } else await write(a, `new${i}`, 'new');
        }
      })(),
    ]);
    expect(raced.deletes).toBeGreaterThan(0);
    expect(raced.updates).toBeGreaterThan(0);
    await expectSameAsFreshScan(a, ['b'], 6);
  });

  it('re-derives the trees from the key index on a new ring, without reading the store, writes racing it', async () => {
    const { nodes } = await cluster(['a', 'b', 'c'], { depth: 5 });
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    for (let i = 0; i < 6000; i++) await write(a, `k${i}`, 'v');
    await a.ae.rebuild();
    await expectSameAsFreshScan(a, ['b', 'c'], 5);
    const before = root(a, 'b');

    // c leaves the ring: every key a replicates now has b as its other replica.
    a.membership.setMembers([member('a'), member('b')]);
    b.membership.setMembers([member('a'), member('b')]);
    const regrouping = a.ae.rebuild();
    // Writes to keys the re-derivation has not reached yet (it goes by entry, in insertion order) and to
    // keys it has, new keys and deletes.
    const raced = { ahead: 0, behind: 0 };
    await Promise.all([
      regrouping,
      (async () => {
        for (let i = 5999; i >= 0 && !a.ae.built; i -= 3) {
          for (const k of [i, 5999 - i]) {
            if (k % 4 === 0) await a.store.deleteUnless(BUCKET, `k${k}`, () => false);
            else await write(a, `k${k}`, 'updated');
            if (!a.ae.built) raced[k === i ? 'ahead' : 'behind']++;
          }
          await write(a, `later${i}`, 'new');
        }
      })(),
    ]);
    expect(raced.ahead).toBeGreaterThan(0);
    expect(raced.behind).toBeGreaterThan(0);
    expect(a.rebuilds.map((r) => r.scannedStore)).toEqual([true, false]);
    expect(root(a, 'b')).not.toBe(before);
    await expectSameAsFreshScan(a, ['b', 'c'], 5);
    expect(() => a.ae.handle({ op: 'ae.root', from: 'c' })).not.toThrow();
    void c;
  });

  it('moves keys between peer trees when their bucket n changes, once told', async () => {
    const { nodes } = await cluster(['a', 'b', 'c'], { n: 3, depth: 4 });
    const [a] = nodes as [TestNode, TestNode, TestNode];
    for (let i = 0; i < 500; i++) await write(a, `k${i}`, 'v');
    await a.ae.rebuild();
    const keysOf = (peer: string) =>
      (a.ae.handle({ op: 'ae.keys', from: peer, leaves: [...Array(16).keys()] }) as AeKeysReply).keys.length;
    expect([keysOf('b'), keysOf('c')]).toEqual([500, 500]);
    await a.props.merge({
      bucket: BUCKET,
      props: { n: 2, r: 1, w: 1, conflict: 'siblings', ttl: 0 },
      ts: Date.now(),
    });
    a.ae.propsChanged();
    await a.ae.rebuild();
    expect(a.rebuilds.map((r) => r.scannedStore)).toEqual([true, false]);
    // With n = 2, a shares each key it replicates with one peer only.
    expect(keysOf('b') + keysOf('c')).toBeLessThan(500);
    await expectSameAsFreshScan(a, ['b', 'c'], 4);
  });
});

describe('the key index across a clean restart', () => {
  const indexFile = (node: TestNode) => join(node.dir, 'anti-entropy.index');

  it('is saved at shutdown and loaded (and deleted) at the next start: trees without a scan of the store', async () => {
    const { nodes } = await cluster(['a', 'b', 'c'], { depth: 5 });
    const [a] = nodes as [TestNode, TestNode, TestNode];
    for (let i = 0; i < 2000; i++) await write(a, `k${i}-${'é'.repeat(i % 4)}`, `v${i}`);
    await a.ae.rebuild();
    await a.ae.stop();
    expect(await a.ae.saveIndex()).toBe(true);
    expect(existsSync(indexFile(a))).toBe(true);

    a.rebuilds.length = 0;
    const ae = a.newAe();
    expect(await ae.openIndex()).toBe(true);
    expect(existsSync(indexFile(a))).toBe(false);
    // Writes after the start, before and during the load, win over the file.
    for (let i = 0; i < 50; i++) await write(a, `k${i}-${'é'.repeat(i % 4)}`, 'after the restart');
    await a.store.deleteUnless(BUCKET, 'k60-', () => false);
    await Promise.all([
      ae.rebuild(),
      (async () => {
        for (let i = 100; i < 150; i++) await write(a, `k${i}-${'é'.repeat(i % 4)}`, 'during the load');
        await a.store.deleteUnless(BUCKET, 'k161-é', () => false);
        await write(a, 'new', 'during the load');
      })(),
    ]);
    expect(ae.indexedKeys).toBe(1999);
    expect(a.rebuilds.map((r) => r.scannedStore)).toEqual([false]);
    await expectSameAsFreshScan(a, ['b', 'c'], 5);
  });

  it('is not saved while incomplete or while a write comes, and a damaged or foreign file means a scan', async () => {
    const { nodes } = await cluster(['a', 'b'], { depth: 4 });
    const [a] = nodes as [TestNode, TestNode];
    for (let i = 0; i < 500; i++) await write(a, `k${i}`, 'v');
    // Not built yet: nothing to save.
    expect(await a.ae.saveIndex()).toBe(false);
    await a.ae.rebuild();
    const saving = a.ae.saveIndex();
    await write(a, 'k1', 'during the save');
    expect(await saving).toBe(false);
    expect(existsSync(indexFile(a))).toBe(false);
    expect(existsSync(`${indexFile(a)}.tmp`)).toBe(false);

    expect(await a.ae.saveIndex()).toBe(true);
    const bytes = readFileSync(indexFile(a));
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 1;
    writeFileSync(indexFile(a), bytes);
    a.rebuilds.length = 0;
    const ae = a.newAe();
    expect(await ae.openIndex()).toBe(true);
    expect(existsSync(indexFile(a))).toBe(false);
    await ae.rebuild();
    expect(a.rebuilds).toEqual([{ keys: 500, scannedStore: true }]);
    await expectSameAsFreshScan(a, ['b'], 4);

    // Another --merkle-depth: its leaves mean nothing here.
    expect(await ae.saveIndex()).toBe(true);
    const deeper = new AntiEntropy({
      self: 'a',
      membership: a.membership,
      props: a.props,
      store: a.store,
      request: async () => undefined,
      mergeLocal: async () => undefined,
      depth: 5,
      timeoutMs: 1000,
      log,
      indexFile: indexFile(a),
      onRebuild: (_keys, scannedStore) => scans.push(scannedStore),
    });
    const scans: boolean[] = [];
    expect(await deeper.openIndex()).toBe(true);
    expect(existsSync(indexFile(a))).toBe(false);
    await deeper.rebuild();
    expect(scans).toEqual([true]);
    expect(deeper.indexedKeys).toBe(500);
  });

  it('puts right what the file holds and the store lost, when the exchange meets it', async () => {
    const { nodes } = await cluster(['a', 'b'], { depth: 3 });
    const [a, b] = nodes as [TestNode, TestNode];
    for (let i = 0; i < 100; i++) await write(a, `k${i}`, 'v', [b]);
    await Promise.all([a.ae.rebuild(), b.ae.rebuild()]);
    expect(await a.ae.exchange('b')).toBe(0);
    expect(await a.ae.saveIndex()).toBe(true);
    // As if the last writes before the shutdown were lost with the machine's power: k7 is in the file
    // but no longer in a's store (nor in b's).
    for (const n of [a, b]) await n.store.deleteUnless(BUCKET, 'k7', () => false);
    const ae = a.newAe();
    expect(await ae.openIndex()).toBe(true);
    await ae.rebuild();
    expect(a.rebuilds.at(-1)).toEqual({ keys: 100, scannedStore: false });
    expect(ae.indexedKeys).toBe(100);
    expect(await ae.exchange('b')).toBe(1);
    expect(ae.indexedKeys).toBe(99);
    expect(await ae.exchange('b')).toBe(0);
  });
});
