import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { versionDigest } from '../../node/src/repair/anti-entropy.js';
import {
  bindCollided,
  type Clock,
  compareSiblings,
  covers,
  descends,
  distinctValues,
  equalHistory,
  fresh,
  join,
  less,
  lww,
  prune,
  type Sibling,
  type SyncStats,
  sameVersion,
  siblingEquals,
  sync,
  syncAll,
  update,
  values,
  withContext,
} from '../../node/src/version/index.js';

/** A sibling named by its value, e.g. s('v1'); lastModified defaults to 0. */
const s = (name: string, lastModified = 0): Sibling => ({
  value: Buffer.from(name),
  contentType: 'text/plain',
  lastModified,
  deleted: false,
  expiresAt: 0,
});

/** A clock written as in the Erlang tests: clock([['a', 2, ['v2']]], ['v9']) = {[{a,2,[v2]}],[v9]}. */
const clock = (entries: Array<[string, number, string[]]>, anonymous: string[] = []): Clock => ({
  entries: entries.map(([id, counter, vs]) => ({ id, counter, values: vs.map((v) => s(v)), time: 0 })),
  anonymous: anonymous.map((v) => s(v)),
});

/** The Erlang view of a clock (ids, counters, value names), ignoring entry times. */
const shape = (c: Clock) => ({
  entries: c.entries.map((e) => [e.id, e.counter, e.values.map((v) => v.value.toString())]),
  anonymous: c.anonymous.map((v) => v.value.toString()),
});

const names = (c: Clock): string[] => values(c).map((v) => v.value.toString());
const sortedNames = (c: Clock): string[] => names(c).sort();

// dvvset:update/2 and update/3 of the Erlang tests, with a fixed time.
const update2 = (client: Clock, id: string) => update(client, undefined, id, 0);
const update3 = (client: Clock, local: Clock, id: string) => update(client, local, id, 0);

describe('dvvset, the examples of the Erlang test suite', () => {
  it('join returns the version vector of the causal history', () => {
    const a = fresh(s('v1'));
    const a1 = update2(a, 'a');
    const b1 = update3(withContext(join(a1), s('v2')), a1, 'b');
    expect(join(a)).toEqual([]);
    expect(join(a1)).toEqual([['a', 1]]);
    expect(join(b1)).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
  });

  it('update discards exactly the values the client context covers', () => {
    const a0 = update2(fresh(s('v1')), 'a');
    const a1 = update3(withContext(join(a0), s('v2')), a0, 'a');
    const a2 = update3(withContext(join(a1), s('v3')), a1, 'b');
    const a3 = update3(withContext(join(a0), s('v4')), a1, 'b');
    const a4 = update3(withContext(join(a0), s('v5')), a1, 'a');
    expect(shape(a0)).toEqual(shape(clock([['a', 1, ['v1']]])));
    expect(shape(a1)).toEqual(shape(clock([['a', 2, ['v2']]])));
    expect(shape(a2)).toEqual(
      shape(
        clock([
          ['a', 2, []],
          ['b', 1, ['v3']],
        ]),
      ),
    );
    expect(shape(a3)).toEqual(
      shape(
        clock([
          ['a', 2, ['v2']],
          ['b', 1, ['v4']],
        ]),
      ),
    );
    expect(shape(a4)).toEqual(shape(clock([['a', 3, ['v5', 'v2']]])));
  });

  it('sync keeps the newer values of each entry and the union of the histories', () => {
    const x = clock([['x', 1, []]]);
    const a = update2(fresh(s('v1')), 'a');
    const y = update2(fresh(s('v2')), 'b');
    const a1 = update2(withContext(join(a), s('v2')), 'a');
    const a3 = update2(withContext(join(a1), s('v3')), 'b');
    const a4 = update2(withContext(join(a1), s('v3')), 'c');
    const w = clock([['a', 1, []]]);
    const z = clock([['a', 2, ['v2', 'v1']]]);
    expect(shape(syncAll([w, z])!)).toEqual(shape(clock([['a', 2, ['v2']]])));
    expect(syncAll([w, z])).toEqual(syncAll([z, w]));
    expect(syncAll([a, a1])).toEqual(syncAll([a1, a]));
    expect(syncAll([a4, a3])).toEqual(syncAll([a3, a4]));
    expect(shape(syncAll([a4, a3])!)).toEqual(
      shape(
        clock([
          ['a', 2, []],
          ['b', 1, ['v3']],
          ['c', 1, ['v3']],
        ]),
      ),
    );
    expect(shape(syncAll([x, a])!)).toEqual(
      shape(
        clock([
          ['a', 1, ['v1']],
          ['x', 1, []],
        ]),
      ),
    );
    expect(syncAll([x, a])).toEqual(syncAll([a, x]));
    expect(shape(syncAll([a, y])!)).toEqual(
      shape(
        clock([
          ['a', 1, ['v1']],
          ['b', 1, ['v2']],
        ]),
      ),
    );
    expect(syncAll([y, a])).toEqual(syncAll([a, y]));
    expect(syncAll([])).toBeUndefined();
  });

  it('a write with a stale context supersedes only what that context saw', () => {
    const a0 = update2(fresh(s('v1')), 'a'); // Mary writes v1 without a context
    const vv1 = join(a0); // Peter reads v1
    const a1 = update3(fresh(s('v2')), a0, 'a'); // Mary writes v2 without a context
    const a2 = update3(withContext(vv1, s('v3')), a1, 'a'); // Peter writes v3 with v1's context
    expect(vv1).toEqual([['a', 1]]);
    expect(shape(a0)).toEqual(shape(clock([['a', 1, ['v1']]])));
    expect(shape(a1)).toEqual(shape(clock([['a', 2, ['v2', 'v1']]])));
    expect(shape(a2)).toEqual(shape(clock([['a', 3, ['v3', 'v2']]])));
  });

  it('less is strict containment of causal histories', () => {
    const a = update2(fresh(s('v1')), 'a');
    const b = update2(withContext(join(a), s('v2')), 'a');
    const b2 = update2(withContext(join(a), s('v2')), 'b');
    const b3 = update2(withContext(join(a), s('v2')), 'z');
    const c = update3(withContext(join(b), s('v3')), a, 'c');
    const d = update3(withContext(join(c), s('v4')), b2, 'd');
    for (const [x, y] of [
      [a, b],
      [a, c],
      [b, c],
      [b, d],
      [b2, d],
      [a, d],
    ] as const) {
      expect(less(x, y)).toBe(true);
    }
    for (const [x, y] of [
      [b2, c],
      [b, b2],
      [b2, b],
      [a, a],
      [c, c],
      [d, b2],
      [b3, d],
    ] as const) {
      expect(less(x, y)).toBe(false);
    }
  });

  it('equalHistory compares only ids and counters', () => {
    const a = clock(
      [
        ['a', 4, ['v5', 'v0']],
        ['b', 0, []],
        ['c', 1, ['v3']],
      ],
      ['v0'],
    );
    const b = clock([
      ['a', 4, ['v555', 'v0']],
      ['b', 0, []],
      ['c', 1, ['v3']],
    ]);
    const c = clock(
      [
        ['a', 4, ['v5', 'v0']],
        ['b', 0, []],
      ],
      ['v6', 'v1'],
    );
    expect(equalHistory(a, b)).toBe(true);
    expect(equalHistory(b, a)).toBe(true);
    expect(equalHistory(a, c)).toBe(false);
    expect(equalHistory(b, c)).toBe(false);
  });

  it('values lists the anonymous values and every entry value', () => {
    const a = clock(
      [
        ['a', 4, ['v0', 'v5']],
        ['b', 0, []],
        ['c', 1, ['v3']],
      ],
      ['v1'],
    );
    expect(names(a)).toEqual(['v1', 'v0', 'v5', 'v3']);
    expect(sortedNames(clock([['a', 4, []]], ['v1', 'v6']))).toEqual(['v1', 'v6']);
  });

  it('lww keeps the newest value in its place, or anonymous when it is newest overall', () => {
    // The Erlang test's integer values are the lastModified of our siblings.
    const n = (v: number) => s(String(v), v);
    const mk = (entries: Array<[string, number, number[]]>, anonymous: number[] = []): Clock => ({
      entries: entries.map(([id, counter, vs]) => ({ id, counter, values: vs.map(n), time: 0 })),
      anonymous: anonymous.map(n),
    });
    const x = mk([
      ['a', 4, [5, 2]],
      ['b', 1, []],
      ['c', 1, [3]],
    ]);
    const y = mk(
      [
        ['a', 4, [5, 2]],
        ['b', 1, []],
        ['c', 1, [3]],
      ],
      [10, 0],
    );
    const z = mk(
      [
        ['a', 4, [5, 2]],
        ['b', 1, [1]],
      ],
      [3],
    );
    expect(shape(lww(x))).toEqual(
      shape(
        mk([
          ['a', 4, [5]],
          ['b', 1, []],
          ['c', 1, []],
        ]),
      ),
    );
    expect(shape(lww(y))).toEqual(
      shape(
        mk(
          [
            ['a', 4, []],
            ['b', 1, []],
            ['c', 1, []],
          ],
          [10],
        ),
      ),
    );
    expect(shape(lww(z))).toEqual(
      shape(
        mk([
          ['a', 4, [5]],
          ['b', 1, []],
        ]),
      ),
    );
  });

  it('lww breaks timestamp ties by value bytes, then content type', () => {
    const tie = clock([], []);
    tie.anonymous = [s('apple', 7), s('pear', 7), { ...s('pear', 7), contentType: 'text/x' }, s('zzz', 6)];
    expect(lww(tie).anonymous).toEqual([{ ...s('pear', 7), contentType: 'text/x' }]);
  });

  it('sync of concurrent client clocks keeps each distinct anonymous value once', () => {
    const merged = sync(clock([], ['v1', 'v2']), clock([], ['v2', 'v3']));
    expect(sortedNames(merged)).toEqual(['v1', 'v2', 'v3']);
    expect(siblingEquals(s('v1'), s('v1'))).toBe(true);
    expect(siblingEquals(s('v1'), { ...s('v1'), deleted: true })).toBe(false);
  });

  it('sync, update and prune return new entries rather than sharing their inputs', () => {
    const a = clock([['a', 1, ['v1']]]);
    const b = clock([['b', 1, ['v2']]]);
    const inputs = [...a.entries, ...b.entries];
    for (const out of [sync(a, b), sync(b, a)]) for (const e of out.entries) expect(inputs).not.toContain(e);
    const ab = sync(a, b);
    expect(update(fresh(s('v3')), ab, 'c', 1).entries[0]).not.toBe(ab.entries[0]);
    expect(prune(ab, { maxEntries: 5, minAgeMs: 0, now: 0 }).entries[0]).not.toBe(ab.entries[0]);
  });

  it('update refuses a client clock without exactly one value', () => {
    expect(() => update(clock([], []), undefined, 'a', 0)).toThrow();
    expect(() => update(clock([], ['v1', 'v2']), undefined, 'a', 0)).toThrow();
  });

  it('withContext sorts the context and the new entry gets the time of the event', () => {
    const c = update(
      withContext(
        [
          ['b', 2],
          ['a', 1],
        ],
        s('v'),
      ),
      undefined,
      'c',
      42,
    );
    expect(shape(c)).toEqual(
      shape(
        clock([
          ['a', 1, []],
          ['b', 2, []],
          ['c', 1, ['v']],
        ]),
      ),
    );
    expect(c.entries.map((e) => e.time)).toEqual([0, 0, 42]);
  });

  it('descends is pointwise >=', () => {
    expect(descends([['a', 2]], [['a', 1]])).toBe(true);
    expect(descends([['a', 2]], [])).toBe(true);
    expect(descends([], [['a', 1]])).toBe(false);
    expect(
      descends(
        [
          ['a', 2],
          ['b', 1],
        ],
        [
          ['a', 1],
          ['b', 2],
        ],
      ),
    ).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests. A "universe" is a random run of client writes and replica syncs over 3-4
// replicas, each replica coordinating with its own id, as in the store. Beside each clock we keep
// a model of its causal history (the set of writes it has seen) and of each write's causal past
// (the history of the context it was written with); the exact current values of a history are
// the writes in it that no other write in it has seen.

/** The model of one clock: the writes it has seen. */
interface State {
  clock: Clock;
  seen: Set<number>;
}

type Op =
  | { kind: 'write'; at: number; ctx: number; ts: number }
  | { kind: 'sync'; to: number; from: number }
  | { kind: 'read'; from: number[] };

interface Universe {
  ids: string[];
  replicas: Array<State | undefined>;
  /** Every clock that existed during the run, replicas' and clients' reads. */
  snapshots: State[];
  /** write number -> the writes its context had seen */
  past: Map<number, Set<number>>;
  now: number;
  nextWrite: number;
}

/** The sibling of write n: its bytes name it, so values map back to writes. */
const writeValue = (n: number, ts: number): Sibling => ({
  value: Buffer.from(`w${n}`),
  contentType: 'application/octet-stream',
  lastModified: ts,
  deleted: false,
  expiresAt: 0,
});
const writeOf = (v: Sibling): number => Number(v.value.toString().slice(1));

// Frozen so that any function mutating an input throws (ESM code is strict mode).
function freeze(c: Clock): Clock {
  for (const v of values(c)) Object.freeze(v);
  for (const e of c.entries) Object.freeze(e.values);
  c.entries.forEach(Object.freeze);
  Object.freeze(c.entries);
  Object.freeze(c.anonymous);
  return Object.freeze(c);
}

function union(a: Set<number>, b: Set<number>): Set<number> {
  return new Set([...a, ...b]);
}

/** The writes of `seen` that no other write of `seen` had seen: what a clock must hold. */
function modelValues(u: Universe, seen: Set<number>): number[] {
  const obsolete = new Set<number>();
  for (const w of seen) for (const p of u.past.get(w) ?? []) obsolete.add(p);
  return [...seen].filter((w) => !obsolete.has(w)).sort((x, y) => x - y);
}

const valueWrites = (c: Clock): number[] =>
  values(c)
    .map(writeOf)
    .sort((x, y) => x - y);

function syncState(a: State, b: State): State {
  return { clock: freeze(sync(a.clock, b.clock)), seen: union(a.seen, b.seen) };
}

/** A client write of a new value with the context of `ctx` (or none), coordinated by replica `at`. */
function write(u: Universe, at: number, ctx: State | undefined, ts: number): State {
  const n = u.nextWrite++;
  const id = u.ids[at]!;
  const local = u.replicas[at];
  const value = writeValue(n, ts);
  u.past.set(n, new Set(ctx?.seen ?? []));
  const client = ctx === undefined ? fresh(value) : withContext(join(ctx.clock), value);
  const clock = freeze(update(client, local?.clock, id, ++u.now));
  const seen = union(union(local?.seen ?? new Set(), ctx?.seen ?? new Set()), new Set([n]));
  return { clock, seen };
}

function run(nIds: number, ops: Op[]): Universe {
  const u: Universe = {
    ids: ['a', 'b', 'c', 'd'].slice(0, nIds),
    replicas: Array.from({ length: nIds }, () => undefined),
    snapshots: [],
    past: new Map(),
    now: 0,
    nextWrite: 0,
  };
  const reads: State[] = [];
  for (const op of ops) {
    u.now++;
    if (op.kind === 'write') {
      const at = op.at % nIds;
      const ctx = op.ctx < 0 || reads.length === 0 ? undefined : reads[op.ctx % reads.length];
      const next = write(u, at, ctx, op.ts);
      u.replicas[at] = next;
      u.snapshots.push(next);
    } else if (op.kind === 'sync') {
      const to = u.replicas[op.to % nIds];
      const from = u.replicas[op.from % nIds];
      if (from === undefined) continue;
      const next = to === undefined ? from : syncState(to, from);
      u.replicas[op.to % nIds] = next;
      u.snapshots.push(next);
    } else {
      // A coordinator's read: the sync of the replies it got.
      const replies = op.from.map((i) => u.replicas[i % nIds]).filter((r) => r !== undefined);
      const first = replies[0];
      if (first === undefined) continue;
      const read = replies.slice(1).reduce(syncState, first);
      reads.push(read);
      u.snapshots.push(read);
    }
  }
  return u;
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      at: fc.nat(3),
      ctx: fc.integer({ min: -1, max: 8 }),
      ts: fc.nat(6),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('sync' as const), to: fc.nat(3), from: fc.nat(3) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('read' as const),
      from: fc.array(fc.nat(3), { minLength: 1, maxLength: 3 }),
    }),
  },
);

const universeArb: fc.Arbitrary<Universe> = fc
  .tuple(fc.integer({ min: 3, max: 4 }), fc.array(opArb, { minLength: 1, maxLength: 40 }))
  .map(([nIds, ops]) => run(nIds, ops));

/** A universe with some of its clocks picked (by index, so fast-check can shrink them). */
const withPicks = (count: number) =>
  fc
    .tuple(universeArb, fc.array(fc.nat(), { minLength: count, maxLength: count }))
    .filter(([u]) => u.snapshots.length > 0);

const pick = (u: Universe, i: number): State => u.snapshots[i % u.snapshots.length]!;

const sameValues = (a: Clock, b: Clock) => expect(valueWrites(a)).toEqual(valueWrites(b));

describe('dvvset laws over random histories of writes and syncs', () => {
  it('every clock holds exactly the writes that no write in its history has seen', () => {
    fc.assert(
      fc.property(universeArb, (u) => {
        for (const st of u.snapshots) expect(valueWrites(st.clock)).toEqual(modelValues(u, st.seen));
      }),
    );
  });

  it('sync keeps no obsolete value and drops no concurrent one', () => {
    fc.assert(
      fc.property(withPicks(2), ([u, [i, j]]) => {
        const a = pick(u, i!);
        const b = pick(u, j!);
        expect(valueWrites(sync(a.clock, b.clock))).toEqual(modelValues(u, union(a.seen, b.seen)));
      }),
    );
  });

  it('sync is commutative, also for client clocks holding anonymous values', () => {
    fc.assert(
      fc.property(withPicks(4), ([u, [i, j, k, l]]) => {
        const client1 = withContext(join(pick(u, k!).clock), writeValue(1000, 1));
        const client2 = fresh(writeValue(1001, 2));
        // Same history as client1: their anonymous values are concurrent and must be unioned.
        const client3 = withContext(join(pick(u, k!).clock), writeValue(1002, 1));
        const client4 = withContext(join(pick(u, l!).clock), writeValue(1003, 0));
        const pool = [
          pick(u, i!).clock,
          pick(u, j!).clock,
          client1,
          client2,
          client3,
          client4,
          sync(client1, pick(u, l!).clock),
        ];
        for (const a of pool) {
          for (const b of pool) {
            const ab = sync(a, b);
            const ba = sync(b, a);
            expect(equalHistory(ab, ba)).toBe(true);
            sameValues(ab, ba);
            // Anonymous values are kept in a canonical order, so replicas converge byte for byte.
            expect(ab).toEqual(ba);
          }
        }
      }),
    );
  });

  it('sync is associative', () => {
    fc.assert(
      fc.property(withPicks(3), ([u, [i, j, k]]) => {
        const [a, b, c] = [pick(u, i!).clock, pick(u, j!).clock, pick(u, k!).clock];
        const left = sync(sync(a, b), c);
        const right = sync(a, sync(b, c));
        expect(equalHistory(left, right)).toBe(true);
        sameValues(left, right);
      }),
    );
  });

  it('sync is idempotent', () => {
    fc.assert(
      fc.property(withPicks(2), ([u, [i, j]]) => {
        const a = pick(u, i!).clock;
        const client = freeze(withContext(join(pick(u, j!).clock), writeValue(1000, 0)));
        for (const c of [a, client, freeze(sync(a, client))]) {
          const cc = sync(c, c);
          expect(equalHistory(cc, c)).toBe(true);
          sameValues(cc, c);
        }
      }),
    );
  });

  it('sync(a, b) descends both a and b', () => {
    fc.assert(
      fc.property(withPicks(2), ([u, [i, j]]) => {
        const a = pick(u, i!).clock;
        const b = pick(u, j!).clock;
        const ab = sync(a, b);
        expect(less(ab, a)).toBe(false);
        expect(less(ab, b)).toBe(false);
        expect(descends(join(ab), join(a))).toBe(true);
        expect(descends(join(ab), join(b))).toBe(true);
      }),
    );
  });

  it('less is irreflexive, transitive, and is strict inclusion of histories', () => {
    fc.assert(
      fc.property(universeArb, (u) => {
        const all = u.snapshots.slice(-15);
        for (const a of all) {
          expect(less(a.clock, a.clock)).toBe(false);
          for (const b of all) {
            const strictSubset = a.seen.size < b.seen.size && [...a.seen].every((w) => b.seen.has(w));
            expect(less(a.clock, b.clock)).toBe(strictSubset);
            if (!less(a.clock, b.clock)) continue;
            for (const c of all) if (less(b.clock, c.clock)) expect(less(a.clock, c.clock)).toBe(true);
          }
        }
      }),
    );
  });

  it('a write with the context of what the client read supersedes it on any replica holding it', () => {
    fc.assert(
      fc.property(withPicks(1), fc.nat(3), ([u, [i]], at) => {
        const read = pick(u, i!);
        const replica = at % u.ids.length;
        const local = u.replicas[replica];
        const holding = local === undefined ? read.clock : sync(local.clock, read.clock);
        const v = writeValue(1000, 0);
        const out = update(withContext(join(read.clock), v), holding, u.ids[replica]!, u.now + 1);
        const outWrites = valueWrites(out);
        for (const w of valueWrites(read.clock)) expect(outWrites).not.toContain(w);
        expect(outWrites).toContain(1000);
        expect(less(read.clock, out)).toBe(true);
      }),
    );
  });

  it('two writes with the same context on the same replica both survive as siblings', () => {
    fc.assert(
      fc.property(withPicks(1), fc.nat(3), ([u, [i]], at) => {
        const ctx = join(pick(u, i!).clock);
        const replica = at % u.ids.length;
        const id = u.ids[replica]!;
        const first = update(
          withContext(ctx, writeValue(1000, 0)),
          u.replicas[replica]?.clock,
          id,
          u.now + 1,
        );
        const second = update(withContext(ctx, writeValue(1001, 0)), first, id, u.now + 2);
        expect(valueWrites(second)).toEqual(expect.arrayContaining([1000, 1001]));
      }),
    );
  });

  it('a write without a context keeps every value it is concurrent with', () => {
    fc.assert(
      fc.property(universeArb, fc.nat(3), (u, at) => {
        const replica = at % u.ids.length;
        const local = u.replicas[replica]?.clock;
        const out = update(fresh(writeValue(1000, 0)), local, u.ids[replica]!, u.now + 1);
        expect(valueWrites(out)).toEqual([...(local ? valueWrites(local) : []), 1000].sort((x, y) => x - y));
      }),
    );
  });

  it('lww leaves exactly the newest value and the same history', () => {
    fc.assert(
      fc.property(withPicks(2), ([u, [i, j]]) => {
        const a = pick(u, i!).clock;
        for (const c of [a, sync(a, withContext(join(pick(u, j!).clock), writeValue(1000, 3)))]) {
          const all = values(c);
          const out = lww(c);
          expect(equalHistory(out, c)).toBe(true);
          if (all.length === 0) {
            expect(values(out)).toEqual([]);
            continue;
          }
          const newest = all.reduce((x, y) => (compareSiblings(y, x) > 0 ? y : x));
          expect(values(out)).toEqual([newest]);
          for (const v of all) expect(v.lastModified).toBeLessThanOrEqual(newest.lastModified);
          // As in the Erlang suite: the lww clock absorbs the original (which has no anonymous values).
          if (c === a) expect(values(sync(a, out))).toEqual([newest]);
        }
      }),
    );
  });

  // Clocks from universes have few entries; prune also gets wide clocks of random entries.
  const pickedClock = withPicks(1).map(([u, [i]]) => pick(u, i!).clock);
  const manyEntriesClock: fc.Arbitrary<Clock> = fc
    .uniqueArray(
      fc.record({
        id: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'),
        counter: fc.integer({ min: 2, max: 5 }),
        live: fc.constantFrom(0, 0, 1, 2),
        time: fc.nat(30),
      }),
      { selector: (e) => e.id, maxLength: 8 },
    )
    .map((es) => ({
      entries: es
        .sort((x, y) => (x.id < y.id ? -1 : 1))
        .map((e) => ({
          id: e.id,
          counter: e.counter,
          values: Array.from({ length: e.live }, (_, k) => writeValue(10 * e.id.charCodeAt(0) + k, 0)),
          time: e.time,
        })),
      anonymous: [],
    }));

  it('prune bounds the number of entries and never drops a value', () => {
    fc.assert(
      fc.property(
        fc.oneof(pickedClock, manyEntriesClock),
        fc.nat(6),
        fc.nat(30),
        fc.integer({ min: 30, max: 60 }),
        (c, maxEntries, minAgeMs, now) => {
          const out = prune(c, { maxEntries, minAgeMs, now });
          const kept = c.entries.filter((e) => e.values.length > 0 || e.time >= now - minAgeMs).length;
          expect(out.entries.length).toBeLessThanOrEqual(Math.max(maxEntries, kept));
          // and it drops no more than it must.
          expect(out.entries.length).toBe(Math.min(c.entries.length, Math.max(maxEntries, kept)));
          expect(valueWrites(out)).toEqual(valueWrites(c));
          // What remains is a subsequence of the original entries, unchanged.
          expect(out.entries).toEqual(c.entries.filter((e) => out.entries.some((o) => o.id === e.id)));
          if (c.entries.length <= maxEntries) expect(out).toEqual(c);
          // The entries dropped are the oldest of those that could be.
          const dropped = c.entries.filter((e) => !out.entries.some((o) => o.id === e.id));
          const spared = out.entries.filter((e) => e.values.length === 0 && e.time < now - minAgeMs);
          for (const d of dropped) {
            expect(d.values).toEqual([]);
            expect(d.time).toBeLessThan(now - minAgeMs);
            for (const k of spared) expect(d.time).toBeLessThanOrEqual(k.time);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('dvvset: versions are compared by their values too', () => {
  const one = () => update(fresh(s('one')), undefined, 'a', 0);
  const two = () => update(fresh(s('two')), undefined, 'a', 0);

  it('sameVersion tells apart equal histories holding different values', () => {
    expect(equalHistory(one(), two())).toBe(true);
    expect(sameVersion(one(), two())).toBe(false);
    expect(sameVersion(one(), one())).toBe(true);
    expect(sameVersion(clock([], ['x', 'y']), clock([], ['y', 'x']))).toBe(true);
    expect(sameVersion(clock([], ['x', 'y']), clock([], ['x', 'z']))).toBe(false);
  });

  it('a dot met with two values keeps both, counts the collision, and converges whichever side merges', () => {
    const stats: SyncStats = { collided: [] };
    const ab = sync(one(), two(), stats);
    const ba = sync(two(), one());
    expect(stats.collided).toHaveLength(1);
    expect(sortedNames(ab)).toEqual(['one', 'two']);
    expect(sameVersion(ab, ba)).toBe(true);
    // Merging again changes nothing and finds no new collision.
    const again: SyncStats = { collided: [] };
    expect(sameVersion(sync(ab, ba, again), ab)).toBe(true);
    expect(again.collided).toHaveLength(0);
    // Once the collided value has a dot of its own, a write that read both supersedes both.
    const bound = bindCollided(ab, stats.collided, () => 'fresh', 0);
    expect(sortedNames(bound)).toEqual(['one', 'two']);
    expect(bound.anonymous).toEqual([]);
    const next = update(withContext(join(bound), s('three')), bound, 'b', 0);
    expect(names(next)).toEqual(['three']);
  });

  it('distinctValues shows one client write stored under two dots once', () => {
    const v = s('same', 5);
    const c = sync(update(fresh(v), undefined, 'a', 0), update(fresh(v), undefined, 'b', 0));
    expect(values(c)).toHaveLength(2);
    expect(distinctValues(c)).toHaveLength(1);
    expect(distinctValues(clock([['a', 2, ['x', 'y']]]))).toHaveLength(2);
  });

  it('the anti-entropy digest differs when only the values differ', () => {
    expect(versionDigest(one()).equals(versionDigest(two()))).toBe(false);
    expect(versionDigest(one()).equals(versionDigest(one()))).toBe(true);
    expect(versionDigest(clock([], ['x', 'y'])).equals(versionDigest(clock([], ['y', 'x'])))).toBe(true);
  });
});

describe('dvvset: covers (a hint may be dropped only when a replica covers it)', () => {
  it('holds when every dot is in the other history, values kept or superseded there', () => {
    const v1 = update(fresh(s('v1')), undefined, 'a', 0);
    const v2 = update(withContext(join(v1), s('v2')), v1, 'a', 0);
    const other = update(fresh(s('o')), undefined, 'b', 0);
    expect(covers(v1, v1)).toBe(true);
    expect(covers(v2, v1)).toBe(true); // v1 superseded there
    expect(covers(v1, v2)).toBe(false);
    expect(covers(other, v1)).toBe(false);
    expect(covers(sync(v1, other), other)).toBe(true);
    // Anonymous values must be there too, unless the history is strictly newer.
    expect(covers(clock([], ['x']), clock([], ['x']))).toBe(true);
    expect(covers(clock([], ['y']), clock([], ['x']))).toBe(false);
    expect(covers(clock([['a', 1, ['z']]]), clock([], ['x']))).toBe(true);
  });
});
