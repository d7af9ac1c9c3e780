import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ClusterMismatchError,
  checkCluster,
  compareEntries,
  type Digest,
  GossipState,
  type MemberEntry,
  type MemberStatus,
  REMOVAL_VERSION_LEAD,
} from '../../node/src/membership/gossip-state.js';
import { generateTokens } from '../../node/src/ring/index.js';

const STATUSES: MemberStatus[] = ['joining', 'up', 'leaving', 'removed'];

/** A plausible entry: the content is a function of (id, generation, version), as in a real history. */
function entry(
  id: string,
  generation: number,
  version: number,
  extra: Partial<MemberEntry> = {},
): MemberEntry {
  return {
    id,
    address: `${id}.svc:${7000 + generation}`,
    tokens: generateTokens(`${id}@${generation}`, 2),
    status: STATUSES[version % 3] as MemberStatus,
    generation,
    version,
    ...extra,
  };
}

const newState = (id = 'self', generation = 100): GossipState =>
  new GossipState('prod', entry(id, generation, 0, { status: 'up' }));

/** Any entry, including ones with equal (generation, version) and different content. */
const anyEntry = fc
  .record({
    id: fc.constantFrom('a', 'b', 'c', 'self'),
    generation: fc.integer({ min: 1, max: 3 }),
    version: fc.integer({ min: 0, max: 4 }),
    address: fc.constantFrom('h1:1', 'h2:2'),
    status: fc.constantFrom(...STATUSES),
    rack: fc.option(fc.constantFrom('r1', 'r2'), { nil: undefined }),
    tokens: fc.constantFrom([], ['0'.repeat(32)], ['f'.repeat(32), '1'.repeat(32)]),
  })
  .map(({ rack, ...e }): MemberEntry => (rack === undefined ? e : { ...e, rack }));

/** Entries from consistent histories (one content per id, generation, version), never about the selves. */
const historyEntry = fc
  .tuple(fc.constantFrom('a', 'b', 'c', 'd'), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 6 }))
  .map(([id, generation, version]) => entry(id, generation, version));

/** A's side of one SYN / ACK / ACK2 exchange with B. */
function exchange(a: GossipState, b: GossipState): void {
  const digestA: Digest = a.digest();
  const ack = b.delta(digestA);
  const digestB = b.digest();
  a.merge(ack);
  b.merge(a.delta(digestB));
}

/** The table minus the given ids: what two nodes must agree on besides their own self entries. */
const without = (state: GossipState, ...ids: string[]) => state.members().filter((e) => !ids.includes(e.id));

describe('checkCluster', () => {
  it('accepts a peer of the same cluster and rejects another with both names in the message', () => {
    expect(() => checkCluster('prod', 'prod')).not.toThrow();
    expect(() => checkCluster('prod', 'staging')).toThrow(ClusterMismatchError);
    expect(() => checkCluster('prod', 'staging')).toThrow(/'staging'.*'prod'/);
  });
});

describe('GossipState', () => {
  it('starts with only itself, as a frozen normalized copy', () => {
    const self = {
      ...entry('self', 100, 0, { status: 'joining' }),
      http: undefined,
      extra: 1,
    } as MemberEntry;
    const state = new GossipState('prod', self);
    expect(state.cluster).toBe('prod');
    expect(state.self).toEqual(entry('self', 100, 0, { status: 'joining' }));
    expect(Object.keys(state.self)).not.toContain('http');
    expect(Object.isFrozen(state.self)).toBe(true);
    expect(Object.isFrozen(state.self.tokens)).toBe(true);
    expect(state.members()).toEqual([state.self]);
    expect(state.digest()).toEqual([['self', 100, 0]]);
  });

  it('rejects an invalid self entry', () => {
    expect(() => new GossipState('prod', entry('', 1, 0))).toThrow(/id/);
    expect(() => new GossipState('prod', entry('x', -1, 0))).toThrow(/generation/);
    expect(() => new GossipState('prod', entry('x', 1, 0.5, { status: 'up' }))).toThrow(/version/);
    expect(() => new GossipState('prod', entry('x', 1, 0, { tokens: ['nope'] }))).toThrow(/tokens/);
    expect(() => new GossipState('prod', entry('x', 1, 0, { status: 'down' as MemberStatus }))).toThrow(
      /status 'down'/,
    );
  });

  it('bumps its own version on every beat and every change of its entry', () => {
    const state = newState();
    state.beat();
    state.beat();
    expect(state.self.version).toBe(2);
    state.updateSelf({ status: 'leaving', http: 'http://self:8080', rack: 'r1' });
    expect(state.self).toMatchObject({ status: 'leaving', http: 'http://self:8080', rack: 'r1', version: 3 });
    const tokens = generateTokens('new', 3);
    state.updateSelf({ tokens, rack: undefined });
    expect(state.self.version).toBe(4);
    expect(state.self.tokens).toEqual(tokens);
    expect(state.self.http).toBe('http://self:8080');
    expect('rack' in state.self).toBe(false);
    tokens.push('0'.repeat(32));
    expect(state.self.tokens).toHaveLength(3);
    expect(state.get('self')).toBe(state.self);
    expect(state.self.generation).toBe(100);
  });

  it('lists members sorted by id and answers get for known and unknown ids', () => {
    const state = newState('m');
    state.merge([entry('z', 1, 1), entry('a', 1, 1)]);
    expect(state.members().map((e) => e.id)).toEqual(['a', 'm', 'z']);
    expect(state.get('z')).toEqual(entry('z', 1, 1));
    expect(state.get('nobody')).toBeUndefined();
  });

  it('sends in a delta exactly the entries newer than the digest, or missing from it', () => {
    const state = newState();
    state.merge([entry('a', 1, 5), entry('b', 2, 1), entry('c', 1, 1), entry('d', 1, 1)]);
    const delta = state.delta([
      ['a', 1, 5], // same
      ['b', 1, 9], // ours has a higher generation
      ['c', 1, 2], // theirs is newer
      ['x', 1, 1], // unknown to us
    ]);
    expect(delta.map((e) => e.id)).toEqual(['b', 'd', 'self']);
  });

  it('lets a restarted member (higher generation, lower version) replace its old entry', () => {
    const state = newState();
    state.merge([entry('a', 1, 500)]);
    const { changed } = state.merge([entry('a', 2, 1)]);
    expect(changed).toEqual([entry('a', 2, 1)]);
    expect(state.get('a')).toEqual(entry('a', 2, 1));
  });

  it('never lets a stale entry overwrite a newer one', () => {
    const state = newState();
    state.merge([entry('a', 2, 7)]);
    expect(state.merge([entry('a', 2, 6), entry('a', 1, 99), entry('a', 2, 7)]).changed).toEqual([]);
    expect(state.get('a')).toEqual(entry('a', 2, 7));
    fc.assert(
      fc.property(fc.array(anyEntry), (entries) => {
        const s = newState();
        s.merge(entries);
        for (const e of entries) {
          if (e.id === 'self') continue;
          expect(compareEntries(s.get(e.id)!, e)).toBeGreaterThanOrEqual(0);
        }
      }),
    );
  });

  it('keeps the newest of several entries for one id within a single merge', () => {
    const state = newState();
    const { changed } = state.merge([entry('a', 1, 3), entry('a', 1, 9), entry('a', 1, 4)]);
    expect(changed).toEqual([entry('a', 1, 9)]);
  });

  it('never lets others overwrite its own entry, whatever they claim', () => {
    const state = newState();
    state.beat();
    const self = state.self;
    const { changed } = state.merge([
      entry('self', 999, 999, { status: 'removed' }),
      entry('self', 100, 5, { address: 'evil:1' }),
    ]);
    expect(changed).toEqual([]);
    expect(state.self).toBe(self);
    fc.assert(
      fc.property(fc.array(anyEntry), (entries) => {
        const s = newState();
        const before = s.self;
        s.merge(entries);
        expect(s.get('self')).toBe(before);
      }),
    );
  });

  it('rejects a batch holding an invalid entry without applying any of it', () => {
    const state = newState();
    const bad = { ...entry('b', 1, 1), version: -1 };
    expect(() => state.merge([entry('a', 1, 1), bad])).toThrow(/invalid member entry 'b'.*version/);
    expect(() => state.merge([null as unknown as MemberEntry])).toThrow(/not an object/);
    expect(state.members().map((e) => e.id)).toEqual(['self']);
  });

  it('gives a merged table that does not depend on the order of entries (commutative)', () => {
    fc.assert(
      fc.property(
        fc
          .array(anyEntry, { maxLength: 30 })
          .chain((entries) =>
            fc.tuple(fc.constant(entries), fc.shuffledSubarray(entries, { minLength: entries.length })),
          ),
        ([entries, shuffled]) => {
          const one = newState();
          one.merge(entries);
          const other = newState();
          for (const e of shuffled) other.merge([e]);
          expect(other.members()).toEqual(one.members());
        },
      ),
    );
  });

  it('gives the same table however batches are grouped (associative)', () => {
    fc.assert(
      fc.property(
        fc.array(anyEntry, { maxLength: 10 }),
        fc.array(anyEntry, { maxLength: 10 }),
        fc.array(anyEntry, { maxLength: 10 }),
        (x, y, z) => {
          const left = newState();
          left.merge(x);
          left.merge(y);
          left.merge(z);
          // x merged with (y merged with z), the latter built in another node and gossiped whole.
          const yz = newState('other');
          yz.merge(y);
          yz.merge(z);
          const right = newState();
          right.merge(x);
          right.merge(without(yz, 'other'));
          expect(right.members()).toEqual(left.members());
        },
      ),
    );
  });

  it('changes nothing when the same entries are merged again (idempotent)', () => {
    fc.assert(
      fc.property(fc.array(anyEntry, { maxLength: 30 }), (entries) => {
        const state = newState();
        state.merge(entries);
        const before = state.members();
        expect(state.merge(entries).changed).toEqual([]);
        expect(state.merge(state.members()).changed).toEqual([]);
        expect(state.members()).toEqual(before);
      }),
    );
  });

  it('converges two nodes to the same table with one digest / delta exchange', () => {
    fc.assert(
      fc.property(fc.array(historyEntry), fc.array(historyEntry), (knownToA, knownToB) => {
        const a = newState('A', 10);
        const b = newState('B', 20);
        a.merge(knownToA);
        b.merge(knownToB);
        exchange(a, b);
        expect(a.members()).toEqual(b.members());
        expect(a.delta(b.digest())).toEqual([]);
        expect(b.delta(a.digest())).toEqual([]);
      }),
    );
  });

  it('converges a cluster where each node gossips with one other per round', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(historyEntry, { maxLength: 8 }), { minLength: 2, maxLength: 6 }),
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        (initial, picks) => {
          const nodes = initial.map((entries, i) => {
            const node = newState(`n${i}`, i + 1);
            node.merge(entries);
            return node;
          });
          // Each round every node gossips with a random other; the last ring-shaped round makes sure
          // information has a path around the whole cluster, as random rounds do with high probability.
          let pick = 0;
          for (let round = 0; round < 3; round++) {
            nodes.forEach((node, i) => {
              const j = (i + 1 + ((picks[pick++ % picks.length] ?? 0) % (nodes.length - 1))) % nodes.length;
              exchange(node, nodes[j]!);
            });
          }
          for (let lap = 0; lap < 2; lap++) {
            nodes.forEach((node, i) => {
              exchange(node, nodes[(i + 1) % nodes.length]!);
            });
          }
          for (const node of nodes) expect(node.members()).toEqual(nodes[0]!.members());
        },
      ),
    );
  });

  it('marks a dead member removed on its behalf, far enough ahead to beat its own later gossip', () => {
    const state = newState();
    state.merge([entry('d', 3, 42, { status: 'up' })]);
    const tombstone = state.markRemoved('d');
    expect(tombstone).toEqual(
      entry('d', 3, 42 + REMOVAL_VERSION_LEAD, { status: 'removed', removedBy: 'self' }),
    );
    expect(state.get('d')).toEqual(tombstone);
    expect(state.markRemoved('d')).toBe(tombstone);
    expect(state.merge([entry('d', 3, 5000, { status: 'up' })]).changed).toEqual([]);
    expect(state.get('d')?.status).toBe('removed');
    expect(() => state.markRemoved('self')).toThrow(/this node/);
    expect(() => state.markRemoved('ghost')).toThrow(/unknown member 'ghost'/);
  });

  it('does not resurrect a removed member from stale gossip of a third node', () => {
    const admin = newState('A', 1);
    const bystander = newState('B', 2);
    const laggard = newState('C', 3);
    for (const node of [admin, bystander, laggard]) node.merge([entry('d', 1, 10, { status: 'up' })]);
    laggard.merge([entry('d', 1, 11, { status: 'up' })]); // the last beat d managed, seen by C only
    admin.markRemoved('d');
    exchange(bystander, admin);
    exchange(bystander, laggard);
    exchange(laggard, admin);
    for (const node of [admin, bystander, laggard]) {
      expect(node.get('d')).toMatchObject({
        status: 'removed',
        generation: 1,
        version: 10 + REMOVAL_VERSION_LEAD,
      });
    }
  });

  it('lets a new incarnation of a removed member rejoin', () => {
    const state = newState();
    state.merge([entry('d', 1, 10)]);
    state.markRemoved('d');
    state.merge([entry('d', 2, 0, { status: 'joining' })]);
    expect(state.get('d')).toMatchObject({ generation: 2, status: 'joining' });
  });

  it('prefers the tombstone when it ties with the member’s own entry, in either order', () => {
    const up = entry('d', 1, 7, { status: 'up' });
    const removed = entry('d', 1, 7, { status: 'removed' });
    for (const order of [
      [up, removed],
      [removed, up],
    ]) {
      const state = newState();
      for (const e of order) state.merge([e]);
      expect(state.get('d')?.status).toBe('removed');
    }
  });

  it('forgets a tombstone only on request, and refuses to forget a live member', () => {
    const state = newState();
    state.merge([entry('d', 1, 10, { status: 'up' })]);
    expect(() => state.forget('d')).toThrow(/cannot forget 'd', it is up/);
    state.markRemoved('d');
    state.forget('d');
    expect(state.get('d')).toBeUndefined();
    expect(state.digest().map(([id]) => id)).toEqual(['self']);
    state.forget('never-known');
  });
});

describe('GossipState.delta tells a restarted member what it was', () => {
  it('sends an older incarnation of a member the asker knows newer (the asker may be that member)', () => {
    const peer = newState('peer');
    peer.merge([entry('self', 100, 7, { status: 'removed' })]);
    // "self" restarted: generation 200 in its digest. The peer still sends its older entry for self.
    const restarted = newState('self', 200);
    const delta = peer.delta(restarted.digest());
    expect(delta.map((e) => [e.id, e.generation])).toContainEqual(['self', 100]);
    restarted.merge(delta);
    expect(restarted.previousIncarnation?.status).toBe('removed');
    expect(restarted.get('self')?.generation).toBe(200); // its own entry is untouched
    // Once the peer has the new incarnation, nothing more is sent about it.
    peer.merge([restarted.get('self')!]);
    expect(peer.delta(restarted.digest()).map((e) => e.id)).not.toContain('self');
  });
});
