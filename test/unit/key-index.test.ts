/**
 * The anti-entropy key index (repair/key-index.ts) against a plain Map model: adds, removals (backward
 * shift in the table, unlinking from leaf lists), id reuse, growth of every array and arena compaction.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyIndex, PAIR_BYTES } from '../../node/src/repair/key-index.js';

const pairOf = (n: number) => {
  const p = Buffer.alloc(PAIR_BYTES);
  p.writeUInt32BE(n >>> 0, 0);
  p.writeUInt32BE((n * 2654435761) >>> 0, 12);
  return p;
};
const bytes = (s: string) => Buffer.from(s, 'utf8');

interface ModelEntry {
  leaf: number;
  pair: Buffer;
  group: number;
}

/** Every observable of the index agrees with the model. */
function expectSame(index: KeyIndex, model: Map<string, ModelEntry>, leafCount: number): void {
  expect(index.size).toBe(model.size);
  const wrong: string[] = [];
  const byLeaf = new Map<number, string[]>();
  for (const [key, e] of model) {
    const id = index.find(bytes(key));
    if (
      id < 0 ||
      index.keyOf(id) !== key ||
      index.leafOf(id) !== e.leaf ||
      index.groupOf(id) !== e.group ||
      !Buffer.from(index.pairView(id)).equals(e.pair) ||
      !index.pairEquals(id, e.pair)
    )
      wrong.push(key);
    byLeaf.set(e.leaf, [...(byLeaf.get(e.leaf) ?? []), key]);
  }
  expect(wrong).toEqual([]);
  for (let leaf = 0; leaf < leafCount; leaf++) {
    const listed = index.idsInLeaf(leaf).map((id) => index.keyOf(id));
    if (listed.sort().join('|') !== (byLeaf.get(leaf) ?? []).sort().join('|')) wrong.push(`leaf ${leaf}`);
  }
  expect(wrong).toEqual([]);
  let live = 0;
  for (let id = 0; id < index.highWater; id++) if (index.isLive(id)) live++;
  expect(live).toBe(model.size);
}

describe('KeyIndex', () => {
  it('finds, lists and removes keys as a map would, whatever the sequence of operations', () => {
    const leafCount = 8;
    // A poor hash (few distinct values): long probe runs, so removals must shift entries back correctly.
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('set' as const),
        key: fc.integer({ min: 0, max: 60 }),
        value: fc.nat(),
        group: fc.nat({ max: 5 }),
      }),
      fc.record({ kind: fc.constant('remove' as const), key: fc.integer({ min: 0, max: 60 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), fc.integer({ min: 1, max: 7 }), (ops, hashes) => {
        const poor = (b: Uint8Array, off: number, len: number) =>
          ((b[off + len - 1] as number) % hashes) * 0x9e3779b1;
        const index = new KeyIndex(leafCount, poor);
        const model = new Map<string, ModelEntry>();
        for (const o of ops) {
          const key = `b\u0000k${o.key}${'é'.repeat(o.key % 3)}`;
          const leaf = o.key % leafCount;
          const id = index.find(bytes(key));
          expect(id >= 0).toBe(model.has(key));
          if (o.kind === 'remove') {
            if (id >= 0) index.remove(id);
            model.delete(key);
            continue;
          }
          const pair = pairOf(o.value);
          if (id >= 0) {
            index.setPair(id, pair);
            index.setGroup(id, o.group);
          } else index.add(bytes(key), leaf, pair, o.group);
          model.set(key, { leaf, pair, group: o.group });
        }
        expectSame(index, model, leafCount);
      }),
      { numRuns: 200 },
    );
  });

  it('grows its arrays and table, reuses removed ids and compacts its arena', () => {
    const leafCount = 1024;
    const index = new KeyIndex(leafCount);
    const model = new Map<string, ModelEntry>();
    const add = (i: number) => {
      const key = `bucket\u0000key-${i}-${'x'.repeat(i % 50)}`;
      const e = { leaf: i % leafCount, pair: pairOf(i), group: i % 3 };
      index.add(bytes(key), e.leaf, e.pair, e.group);
      model.set(key, e);
    };
    for (let i = 0; i < 60_000; i++) add(i);
    const grown = index.memoryBytes;
    // Remove two thirds: the arena's garbage passes its live bytes and is compacted away.
    for (const key of [...model.keys()]) {
      if (Number(key.split('-')[1]) % 3 === 0) continue;
      index.remove(index.find(bytes(key)));
      model.delete(key);
    }
    expectSame(index, model, leafCount);
    const high = index.highWater;
    for (let i = 60_000; i < 90_000; i++) add(i);
    // Removed ids were handed out again before new ones.
    expect(index.highWater).toBe(high);
    expectSame(index, model, leafCount);
    expect(index.memoryBytes).toBeLessThanOrEqual(grown * 1.5);
  });

  it('keeps a key of its longest length and refuses empty or longer keys and bad leaves', () => {
    const index = new KeyIndex(4);
    const long = Buffer.alloc(0xffff, 'a');
    const id = index.add(long, 3, pairOf(1), 0);
    expect(index.keyOf(id)).toBe(long.toString());
    expect(() => index.add(Buffer.alloc(0x10000, 'b'), 0, pairOf(2), 0)).toThrow(RangeError);
    expect(() => index.add(Buffer.alloc(0), 0, pairOf(2), 0)).toThrow(RangeError);
    expect(() => index.add(bytes('k'), 4, pairOf(2), 0)).toThrow(RangeError);
    expect(() => index.setPair(id, Buffer.alloc(8))).toThrow(RangeError);
    expect(() => new KeyIndex(0x10001)).toThrow(RangeError);
    expect(index.idsInLeaf(99)).toEqual([]);
    index.remove(id);
    expect(() => index.remove(id)).toThrow(RangeError);
    expect(index.find(long)).toBe(-1);
  });
});
