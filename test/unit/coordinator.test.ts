import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BucketPropsTable } from '../../node/src/buckets/props.js';
import { Coordinator } from '../../node/src/coordinator/coordinator.js';
import { QuorumNotMetError, TooManySiblingsError } from '../../node/src/errors.js';
import type { Member } from '../../node/src/membership/membership.js';
import { StaticMembership } from '../../node/src/membership/static.js';
import type { ReplicaRequest } from '../../node/src/replica/messages.js';
import { Replica } from '../../node/src/replica/replica.js';
import { generateTokens } from '../../node/src/ring/index.js';
import { ObjectStore } from '../../node/src/storage/store.js';
import { InMemoryNetwork } from '../../node/src/transport/memory.js';
import { type Clock, join, type Sibling, values } from '../../node/src/version/index.js';

interface TestNode {
  id: string;
  /** Replicas this node, as coordinator, reported as having missed a write. */
  missed: string[];
  /** Hints this node keeps as a stand-in for a replica that was down (sloppy quorum). */
  hints: Array<{ target: string; key: string }>;
  store: ObjectStore;
  props: BucketPropsTable;
  coordinator: Coordinator;
  repairs: number;
}

const dirs: string[] = [];
const stores: ObjectStore[] = [];

async function cluster(
  ids: string[],
  n = 3,
): Promise<{ net: InMemoryNetwork; nodes: Record<string, TestNode> }> {
  const net = new InMemoryNetwork();
  const members: Member[] = ids.map((id) => ({ id, address: `${id}:7070`, tokens: generateTokens(id, 16) }));
  const nodes: Record<string, TestNode> = {};
  for (const id of ids) {
    const dir = mkdtempSync(joinPath(tmpdir(), `dynamo-coord-${id}-`));
    dirs.push(dir);
    const store = await ObjectStore.open(dir, { syncWrites: false });
    stores.push(store);
    const props = await BucketPropsTable.load(store, { n, r: 2, w: 2, conflict: 'siblings', ttl: 0 });
    const replica = new Replica(store, props, {
      self: id,
      clockMaxEntries: 50,
      clockPruneAgeMs: 60_000,
      maxSiblings: 25,
      storeHint: async (h) => {
        nodes[id]!.hints.push({ target: h.target, key: h.key });
      },
    });
    const transport = net.transport(id);
    await transport.listen((_from, body) => replica.handle(body as ReplicaRequest));
    const node: TestNode = {
      id,
      store,
      props,
      repairs: 0,
      missed: [],
      hints: [],
      coordinator: undefined as unknown as Coordinator,
    };
    node.coordinator = new Coordinator({
      membership: new StaticMembership(id, 'test', members),
      props,
      call: (peer, req, timeoutMs) =>
        peer === id ? replica.handle(req) : transport.request(peer, req, timeoutMs),
      log: pino({ level: 'silent' }),
      onReadRepair: (count) => {
        node.repairs += count;
      },
      onReplicaMissed: (peer) => {
        node.missed.push(peer);
      },
    });
    nodes[id] = node;
  }
  return { net, nodes };
}

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const sib = (text: string, at = Date.now()): Sibling => ({
  value: Buffer.from(text),
  contentType: 'text/plain',
  lastModified: at,
  deleted: false,
  expiresAt: 0,
});
const texts = (c: Clock | undefined) =>
  c
    ? values(c)
        .map((s) => s.value.toString())
        .sort()
    : [];
const write = { w: 2, timeoutMs: 1000, context: [] as Array<[string, number]> };
const read = { r: 2, timeoutMs: 1000 };

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never happened: ${what}`);
}

describe('Coordinator', () => {
  it('acknowledges a w=2 write without waiting for a replica that hangs', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c']);
    net.setDelay('c', Number.POSITIVE_INFINITY);
    const started = Date.now();
    const stored = await nodes.a!.coordinator.put('b', 'k', sib('v'), { ...write, timeoutMs: 5000 });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(texts(stored)).toEqual(['v']);
  });

  it('fails a w=3 write with needed 3 / got 2 after the timeout when a replica hangs', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c']);
    net.setDelay('c', Number.POSITIVE_INFINITY);
    const err = await nodes
      .a!.coordinator.put('b', 'k', sib('v'), { ...write, w: 3, timeoutMs: 100 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(QuorumNotMetError);
    expect(err).toMatchObject({ needed: 3, got: 2 });
  });

  it('counts a down replica as a failed read: r=3 fails, r=2 succeeds', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c']);
    await nodes.a!.coordinator.put('b', 'k', sib('v'), { ...write, w: 3 });
    net.setDown('b', true);
    const err = await nodes.a!.coordinator.get('b', 'k', { ...read, r: 3 }).catch((e) => e);
    expect(err).toMatchObject({ needed: 3, got: 2 });
    expect(texts(await nodes.a!.coordinator.get('b', 'k', read))).toEqual(['v']);
  });

  it('returns undefined for a key no replica has', async () => {
    const { nodes } = await cluster(['a', 'b', 'c']);
    expect(await nodes.b!.coordinator.get('b', 'missing', read)).toBeUndefined();
  });

  it('forwards a write to the preference list when the coordinator is not a replica, falling back past a down node', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c', 'd'], 2);
    // Find a key whose two replicas exclude 'd'.
    let key = '';
    for (let i = 0; ; i++) {
      const pref = nodes.d!.coordinator.preferenceList('b', `k${i}`);
      if (!pref.includes('d')) {
        key = `k${i}`;
        break;
      }
    }
    const [first, second] = nodes.d!.coordinator.preferenceList('b', key);
    net.setDown(first!, true);
    const stored = await nodes.d!.coordinator.put('b', key, sib('v'), { ...write, w: 1 });
    expect(texts(stored)).toEqual(['v']);
    // The first replica refused, so the second coordinated the write.
    expect(net.log.filter((m) => (m.body as ReplicaRequest).op === 'put').map((m) => m.to)).toEqual([second]);
    expect(texts(await nodes[second!]!.store.get('b', key))).toEqual(['v']);
    expect(await nodes.d!.store.get('b', key)).toBeUndefined();
  });

  it('keeps concurrent writes from different coordinators as siblings and supersedes them with their context', async () => {
    const { nodes } = await cluster(['a', 'b', 'c']);
    await nodes.a!.coordinator.put('b', 'cart', sib('x'), write);
    await nodes.b!.coordinator.put('b', 'cart', sib('y'), write);
    const both = await nodes.c!.coordinator.get('b', 'cart', { ...read, r: 3 });
    expect(texts(both)).toEqual(['x', 'y']);
    await nodes.c!.coordinator.put('b', 'cart', sib('x+y'), { ...write, w: 3, context: join(both!) });
    expect(texts(await nodes.a!.coordinator.get('b', 'cart', { ...read, r: 3 }))).toEqual(['x+y']);
  });

  it('repairs a replica that missed a write, and only that replica', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c']);
    const v1 = await nodes.a!.coordinator.put('b', 'k', sib('v1'), { ...write, w: 3 });
    net.setDown('c', true);
    await nodes.a!.coordinator.put('b', 'k', sib('v2'), { ...write, context: join(v1) });
    net.setDown('c', false);
    expect(texts(await nodes.c!.store.get('b', 'k'))).toEqual(['v1']);

    const merged = await nodes.b!.coordinator.get('b', 'k', { ...read, r: 3 });
    expect(texts(merged)).toEqual(['v2']); // v1 is superseded, not a sibling
    await eventually(async () => texts(await nodes.c!.store.get('b', 'k'))[0] === 'v2', 'c repaired');
    expect(nodes.b!.repairs).toBe(1);
    const merges = net.log.filter((m) => (m.body as ReplicaRequest).op === 'merge' && m.from === 'b');
    expect(merges.map((m) => m.to)).toEqual(['c']);
  });

  it('sends no repair when all replicas agree', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c']);
    await nodes.a!.coordinator.put('b', 'k', sib('v'), { ...write, w: 3 });
    await nodes.b!.coordinator.get('b', 'k', { ...read, r: 3 });
    await new Promise((r) => setTimeout(r, 20));
    expect(nodes.b!.repairs).toBe(0);
    expect(net.log.filter((m) => m.from === 'b' && (m.body as ReplicaRequest).op === 'merge')).toEqual([]);
  });

  it('resolves concurrent writes to the newest in a last-writer-wins bucket', async () => {
    const { nodes } = await cluster(['a', 'b', 'c']);
    for (const n of Object.values(nodes)) {
      await n.props.merge({ bucket: 'lww', props: { n: 3, r: 2, w: 2, conflict: 'lww', ttl: 0 }, ts: 1 });
    }
    await nodes.a!.coordinator.put('lww', 'k', sib('old', 1000), write);
    await nodes.b!.coordinator.put('lww', 'k', sib('new', 2000), write);
    expect(texts(await nodes.c!.coordinator.get('lww', 'k', { ...read, r: 3 }))).toEqual(['new']);
  });

  it('never lets two concurrent writes on one replica lose either value', async () => {
    const { nodes } = await cluster(['a', 'b', 'c']);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => nodes.a!.coordinator.put('b', 'hot', sib(`v${i}`), write)),
    );
    const all = await nodes.a!.coordinator.get('b', 'hot', { ...read, r: 3 });
    expect(texts(all)).toHaveLength(20);
  });

  it('refuses a write that would leave more siblings than the limit, writing nothing, wherever it is coordinated', async () => {
    const { nodes } = await cluster(['a', 'b', 'c', 'd'], 3);
    // A key of which d is not a replica, so d's write is refused by a remote replica.
    let key = '';
    for (let i = 0; key === ''; i++)
      if (!nodes.d!.coordinator.preferenceList('b', `k${i}`).includes('d')) key = `k${i}`;
    const [owner] = nodes.d!.coordinator.preferenceList('b', key);
    for (let i = 0; i < 25; i++) await nodes[owner!]!.coordinator.put('b', key, sib(`v${i}`), write);
    const local = await nodes[owner!]!.coordinator.put('b', key, sib('one too many'), write).catch((e) => e);
    expect(local).toBeInstanceOf(TooManySiblingsError);
    const remote = await nodes.d!.coordinator.put('b', key, sib('one too many'), write).catch((e) => e);
    expect(remote).toBeInstanceOf(TooManySiblingsError);
    expect(remote).toMatchObject({ siblings: 26, limit: 25, status: 409 });
    const stored = await nodes[owner!]!.coordinator.get('b', key, { ...read, r: 3 });
    expect(texts(stored)).toHaveLength(25);
    // Resolving with the context is always allowed and brings the count down.
    await nodes.d!.coordinator.put('b', key, sib('resolved'), { ...write, context: join(stored!) });
    expect(texts(await nodes.a!.coordinator.get('b', key, { ...read, r: 3 }))).toEqual(['resolved']);
  });

  it('reports each replica that missed a write, for hinted handoff, and none when all took it', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c']);
    await nodes.a!.coordinator.put('b', 'k1', sib('v'), { ...write, w: 3 });
    expect(nodes.a!.missed).toEqual([]);
    net.setDown('c', true);
    await nodes.a!.coordinator.put('b', 'k2', sib('v'), write);
    await eventually(async () => nodes.a!.missed.length === 1, 'miss reported');
    expect(nodes.a!.missed).toEqual(['c']);
  });

  it('stands in for a down replica with the next node clockwise (sloppy), but not in a strict write', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c', 'd', 'e'], 3);
    // A key that a coordinates, with a down replica.
    let key = '';
    for (let i = 0; key === ''; i++)
      if (nodes.a!.coordinator.preferenceList('b', `s${i}`)[0] === 'a') key = `s${i}`;
    const pref = nodes.a!.coordinator.preferenceList('b', key);
    const down = pref[2]!;
    net.setDown(down, true);

    const err = await nodes
      .a!.coordinator.put('b', key, sib('v'), { ...write, w: 3, strict: true })
      .catch((e) => e);
    expect(err).toMatchObject({ needed: 3, got: 2 });

    await nodes.a!.coordinator.put('b', key, sib('v2'), { ...write, w: 3 });
    const holders = Object.values(nodes).filter((n) =>
      n.hints.some((h) => h.target === down && h.key === key),
    );
    expect(holders).toHaveLength(1);
    expect(pref).not.toContain(holders[0]!.id); // the stand-in is outside the preference list
    expect(holders[0]!.id).not.toBe(down);
  });

  it('with every replica unreachable, a stand-in coordinates a sloppy write as a hint; a strict write is refused', async () => {
    const { net, nodes } = await cluster(['a', 'b', 'c', 'd', 'e'], 3);
    // A key none of whose replicas is a, so a can coordinate while all of them are cut off.
    let key = '';
    for (let i = 0; key === ''; i++)
      if (!nodes.a!.coordinator.preferenceList('b', `p${i}`).includes('a')) key = `p${i}`;
    const pref = nodes.a!.coordinator.preferenceList('b', key);
    for (const id of pref) net.setDown(id, true);

    const strict = await nodes
      .a!.coordinator.put('b', key, sib('s'), { ...write, strict: true })
      .catch((e) => e);
    expect(strict).toMatchObject({ needed: 2, got: 0 });
    const stored = await nodes.a!.coordinator.put('b', key, sib('sloppy'), write);
    expect(texts(stored)).toEqual(['sloppy']);
    // A hint for every replica: kept by the stand-ins outside the preference list, and by the
    // coordinator for the one no stand-in was left for. None stored the value as a replica.
    const hinted = Object.values(nodes).flatMap((n) =>
      n.hints.filter((h) => h.key === key).map((h) => h.target),
    );
    expect(hinted).toHaveLength(2);
    for (const id of pref) expect([...hinted, ...nodes.a!.missed]).toContain(id);
    for (const n of Object.values(nodes)) expect(n.store.get('b', key)).toBeUndefined();
  });
});
