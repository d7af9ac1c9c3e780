/**
 * Dot uniqueness (version/actors.ts) on real replicas over LevelDB: stand-in writes, reaping, late
 * copies after a reap, pruning and restarts must never make one dot name two writes. Each scenario is
 * one the fault-injection run found losing acknowledged writes before actor ids were per key life.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BucketPropsTable } from '../../node/src/buckets/props.js';
import type { PutReply, ReplicaRequest } from '../../node/src/replica/messages.js';
import { Replica } from '../../node/src/replica/replica.js';
import { decodeObject } from '../../node/src/storage/codec.js';
import { ObjectStore } from '../../node/src/storage/store.js';
import {
  ActorMint,
  type Clock,
  fresh,
  join,
  prune,
  type Sibling,
  sync,
  update,
  type VersionVector,
  values,
  withContext,
} from '../../node/src/version/index.js';

const dirs: string[] = [];
const stores: ObjectStore[] = [];

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Node {
  id: string;
  replica: Replica;
  store: ObjectStore;
  collisions: number;
  hints: Buffer[];
}

async function node(id: string, dir?: string, clockMaxEntries = 50): Promise<Node> {
  const path = dir ?? mkdtempSync(joinPath(tmpdir(), `dynamo-actors-${id}-`));
  if (!dir) dirs.push(path);
  const store = await ObjectStore.open(path, { syncWrites: false });
  stores.push(store);
  const props = await BucketPropsTable.load(store, { n: 3, r: 2, w: 2, conflict: 'siblings', ttl: 0 });
  const n: Node = { id, store, collisions: 0, hints: [], replica: undefined as unknown as Replica };
  n.replica = new Replica(store, props, {
    self: id,
    clockMaxEntries,
    clockPruneAgeMs: 0,
    maxSiblings: 100,
    storeHint: async (h) => {
      n.hints.push(h.obj);
    },
    onDotCollision: (_b, _k, c) => {
      n.collisions += c;
    },
  });
  return n;
}

const sib = (text: string, deleted = false): Sibling => ({
  value: deleted ? Buffer.alloc(0) : Buffer.from(text),
  contentType: deleted ? '' : 'text/plain',
  lastModified: Date.now(),
  deleted,
  expiresAt: 0,
});

const live = (c: Clock | undefined) =>
  c
    ? values(c)
        .filter((s) => !s.deleted)
        .map((s) => s.value.toString())
        .sort()
    : [];

async function put(n: Node, text: string, ctx: VersionVector = [], deleted = false): Promise<Buffer> {
  const req: ReplicaRequest = { op: 'put', b: 'b', k: 'k', ctx, sib: sib(text, deleted), lww: false };
  return ((await n.replica.handle(req)) as PutReply).obj;
}

async function standIn(n: Node, text: string, ctx: VersionVector = []): Promise<Buffer> {
  const req: ReplicaRequest = {
    op: 'put.hint',
    target: 'elsewhere',
    b: 'b',
    k: 'k',
    ctx,
    sib: sib(text),
    lww: false,
  };
  return ((await n.replica.handle(req)) as PutReply).obj;
}

const merge = (n: Node, obj: Buffer) => n.replica.handle({ op: 'merge', b: 'b', k: 'k', obj, lww: false });

describe('causal identity: one dot never names two writes', () => {
  it('two blind writes through one stand-in both survive at the replica (observed: one was lost)', async () => {
    const s = await node('s');
    const r = await node('r');
    const first = await standIn(s, 'first');
    const second = await standIn(s, 'second');
    await merge(r, first);
    await merge(r, second);
    expect(live(r.store.get('b', 'k'))).toEqual(['first', 'second']);
    expect(r.collisions).toBe(0);
  });

  it('a stand-in write after a resolved sibling set survives (a second partition)', async () => {
    const s = await node('s');
    const r = await node('r');
    await merge(r, await standIn(s, 'a'));
    await merge(r, await standIn(s, 'b'));
    const resolved = await put(r, 'a+b', join(r.store.get('b', 'k')!));
    const ctx = join(decodeObject(resolved));
    await merge(r, await standIn(s, 'c', ctx));
    await merge(r, await standIn(s, 'd', ctx));
    expect(live(r.store.get('b', 'k'))).toEqual(['c', 'd']);
  });

  it('a key re-created after a reap survives the old tombstone of a replica that missed the reap', async () => {
    const a = await node('a');
    const b = await node('b');
    await merge(b, await put(a, 'v1'));
    const ctx = join(a.store.get('b', 'k')!);
    const tomb = await put(a, '', ctx, true);
    await merge(b, tomb);
    // a reaps its copy; b's reap fails (it keeps the tombstone)
    expect(await a.replica.handle({ op: 'reap', b: 'b', k: 'k', obj: tomb })).toEqual({ reaped: true });
    const recreated = await put(a, 'v2');
    await merge(b, recreated);
    await merge(a, b.store.getRaw('b', 'k')!);
    expect(live(a.store.get('b', 'k'))).toEqual(['v2']);
    expect(live(b.store.get('b', 'k'))).toEqual(['v2']);
  });

  it('a late copy merged back after a reap does not make the coordinator reuse a dot', async () => {
    const a = await node('a');
    const b = await node('b');
    const v1 = await put(a, 'v1');
    const v2 = await put(a, 'v2', join(decodeObject(v1)));
    const tomb = await put(a, '', join(decodeObject(v2)), true);
    await merge(b, v2); // b holds v2, and misses the delete and the reap
    await a.replica.handle({ op: 'reap', b: 'b', k: 'k', obj: tomb });
    await merge(a, v1); // a late hint of v1 comes back to a
    const v3 = await put(a, 'v3'); // blind write: the old actor would have minted v2's dot again
    await merge(b, v3);
    await merge(a, b.store.getRaw('b', 'k')!);
    expect(live(b.store.get('b', 'k'))).toContain('v3');
    expect(live(a.store.get('b', 'k'))).toContain('v3');
    expect(a.collisions + b.collisions).toBe(0);
  });

  it('a restarted node never continues the actor of its previous incarnation', async () => {
    const dir = mkdtempSync(joinPath(tmpdir(), 'dynamo-actors-restart-'));
    dirs.push(dir);
    const a = await node('a', dir);
    const other = await node('o');
    await merge(other, await put(a, 'before'));
    // The crash lost a's copy of the last write (as an unsynced write or a wiped disk would).
    await a.store.close();
    stores.splice(stores.indexOf(a.store), 1);
    rmSync(dir, { recursive: true, force: true });
    const restarted = await node('a', dir);
    await merge(other, await put(restarted, 'after'));
    expect(live(other.store.get('b', 'k'))).toEqual(['after', 'before']);
    expect(other.collisions).toBe(0);
  });

  it('pruning keeps the entry of an actor the node may still continue', async () => {
    const a = await node('a', undefined, 2); // prune age 0
    const ids = ['x', 'y', 'z'];
    let c: Clock | undefined;
    for (const id of ids) c = update(withContext(c ? join(c) : [], sib(id)), c, id, 0);
    await merge(a, (await import('../../node/src/storage/codec.js')).encodeObject(c!));
    const obj = decodeObject(await put(a, 'mine', join(a.store.get('b', 'k')!)));
    const mine = a.replica.actors;
    const own = obj.entries.filter((e) => mine.isOwn(e.id));
    expect(own).toHaveLength(1);
    // Prune the stored clock again as hard as the options allow: the active actor's entry stays.
    const pruned = prune(obj, {
      maxEntries: 0,
      minAgeMs: 0,
      now: Date.now() + 1,
      keep: (id) => mine.isActive(id),
    });
    expect(pruned.entries.map((e) => e.id)).toContain(own[0]!.id);
  });
});

describe('a dot collision (should never happen) is detected, counted and resolvable', () => {
  it('keeps both values, counts it, and a write with the read context supersedes both', async () => {
    const a = await node('a');
    const b = await node('b');
    // Force the old bug: both replicas mint under one actor.
    const mints = [a, b].map((n) => n.replica.actors);
    const real = mints.map((m) => m.actorFor.bind(m));
    for (const m of mints) m.actorFor = () => 'same';
    const one = await put(a, 'one');
    await put(b, 'two');
    mints.forEach((m, i) => {
      m.actorFor = real[i]!;
    });
    await merge(b, one);
    expect(b.collisions).toBe(1);
    const both = b.store.get('b', 'k')!;
    expect(live(both)).toEqual(['one', 'two']);
    await merge(a, b.store.getRaw('b', 'k')!);
    const resolved = await put(b, 'one+two', join(both));
    await merge(a, resolved);
    expect(live(a.store.get('b', 'k'))).toEqual(['one+two']);
    expect(live(b.store.get('b', 'k'))).toEqual(['one+two']);
  });
});

describe('ActorMint', () => {
  it('continues an actor only on the key it was minted for, and never after a retire', () => {
    const m = new ActorMint('n1', 'inc');
    const first = m.actorFor(undefined);
    const k1 = update(fresh(sib('v')), undefined, first, 0);
    expect(m.actorFor(k1)).toBe(first);
    const other = m.actorFor(undefined);
    expect(other).not.toBe(first);
    const k2 = update(fresh(sib('w')), undefined, other, 0);
    m.retire(k1); // k1 was deleted: its actor ends, the other key's goes on
    expect(m.isActive(first)).toBe(false);
    expect(m.isActive(other)).toBe(true);
    expect(m.actorFor(k2)).toBe(other);
    const after = m.actorFor(k1);
    expect(after).not.toBe(first);
    expect(after).not.toBe(other);
    m.retireAll();
    expect(m.isActive(other)).toBe(false);
    expect(m.actorFor(k2)).not.toBe(other);
  });

  it('never continues an actor of another incarnation or another node', () => {
    const old = new ActorMint('n1', 'old');
    const c = update(fresh(sib('v')), undefined, old.actorFor(undefined), 0);
    const now = new ActorMint('n1', 'new');
    expect(now.actorFor(c)).not.toBe(c.entries[0]!.id);
    expect(now.isOwn(c.entries[0]!.id)).toBe(true);
    expect(now.isActive(c.entries[0]!.id)).toBe(false);
    expect(new ActorMint('n11', 'old').isOwn(c.entries[0]!.id)).toBe(false);
  });

  it('draws a different incarnation at every start', () => {
    const tags = new Set(Array.from({ length: 100 }, () => new ActorMint('n').incarnation));
    expect(tags.size).toBe(100);
  });

  it('without it, a stand-in writing against no state mints the same dot twice and a merge drops a write', () => {
    // The failure this module exists to prevent, shown with the old rule (one actor per node).
    const one = update(fresh(sib('one')), undefined, 'standin', 0);
    const two = update(fresh(sib('two')), undefined, 'standin', 0);
    const stats = { collided: [] };
    const merged = sync(one, two, stats);
    // Detected: the dot collides and both values are kept, counted once.
    expect(stats.collided).toHaveLength(1);
    expect(live(merged)).toEqual(['one', 'two']);
  });
});
