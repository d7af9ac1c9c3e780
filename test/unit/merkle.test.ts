import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compareLevelByLevel,
  HASH_BYTES,
  inTokenRange,
  type MerkleEntry,
  MerkleTree,
  pairHash,
  type TokenRange,
} from '../../node/src/repair/index.js';
import { hashKey, type Token } from '../../node/src/ring/index.js';

const RING_SIZE = 1n << 128n;

/** A token from a hex prefix padded with zeros, e.g. t('40') = '4000…0'. */
const t = (prefix: string): Token => prefix.padEnd(32, '0');
const toToken = (value: bigint): Token =>
  (((value % RING_SIZE) + RING_SIZE) % RING_SIZE).toString(16).padStart(32, '0');
const big = (token: Token): bigint => BigInt(`0x${token}`);

/** Number of positions in (start, end]; start = end is the whole ring. */
function width(range: TokenRange): bigint {
  const span = (big(range.end) - big(range.start) + RING_SIZE) % RING_SIZE;
  return span === 0n ? RING_SIZE : span;
}

/** A position inside range for key, spread like a hash: lets any range hold any key. */
function positionIn(range: TokenRange, key: string): Token {
  return toToken(big(range.start) + 1n + (big(hashKey('b', key)) % width(range)));
}

/** The leaf a position belongs to, straight from the definition: offset in the range scaled to the leaf count. */
function expectedLeaf(range: TokenRange, depth: number, position: Token): number {
  const offset = (big(position) - big(range.start) - 1n + RING_SIZE) % RING_SIZE;
  return Number((offset * (1n << BigInt(depth))) / width(range));
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest().subarray(0, 12);

function entriesOf(range: TokenRange, contents: Map<string, string>): MerkleEntry[] {
  return [...contents].map(([objectKey, version]) => ({
    objectKey,
    position: positionIn(range, objectKey),
    digest: digest(version),
  }));
}

function expectSameTree(a: MerkleTree, b: MerkleTree): void {
  expect(a.rootHash().equals(b.rootHash())).toBe(true);
  for (let d = 0; d <= a.depth; d++) expect(a.level(d)).toEqual(b.level(d));
}

const tokenArb = fc.bigInt({ min: 0n, max: RING_SIZE - 1n }).map(toToken);
/** Any range wide enough for 2^16 leaves: wrapping, non-wrapping, or the whole ring. */
const rangeArb = fc
  .tuple(tokenArb, tokenArb)
  .map(([start, end]) => ({ start, end }))
  .filter((r) => width(r) >= 1n << 16n);
const depthArb = fc.integer({ min: 1, max: 8 });

const FULL_RING: TokenRange = { start: t('00'), end: t('00') };
const QUARTER: TokenRange = { start: t('40'), end: t('80') };
const WRAPPING: TokenRange = { start: t('f0'), end: t('10') };

describe('MerkleTree contents', () => {
  it('an empty tree has an all-zero root and levels, and no differences from another empty tree', () => {
    const a = new MerkleTree(QUARTER, 4);
    const b = MerkleTree.build(QUARTER, 4, []);
    expect(a.rootHash()).toEqual(Buffer.alloc(HASH_BYTES));
    for (let d = 0; d <= 4; d++) expect(a.level(d)).toEqual(Array(2 ** d).fill(Buffer.alloc(HASH_BYTES)));
    expect(MerkleTree.diff(a, b)).toEqual([]);
    expect(a.leafCount).toBe(16);
  });

  it('a tree updated incrementally through random inserts, changes and deletes equals the tree built from scratch over the final contents', () => {
    const opArb = fc.record({
      key: fc.integer({ min: 0, max: 30 }),
      version: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(rangeArb, depthArb, fc.array(opArb, { maxLength: 120 }), (range, depth, ops) => {
        const tree = new MerkleTree(range, depth);
        const contents = new Map<string, string>();
        for (const { key, version } of ops) {
          const objectKey = `key-${key}`;
          const before = contents.get(objectKey);
          const after = version === undefined ? undefined : `v${version}`;
          tree.update(
            objectKey,
            positionIn(range, objectKey),
            before === undefined ? undefined : digest(before),
            after === undefined ? undefined : digest(after),
          );
          if (after === undefined) contents.delete(objectKey);
          else contents.set(objectKey, after);
          // Reading in the middle must not leave stale inner nodes behind.
          if (key % 7 === 0) tree.rootHash();
        }
        expectSameTree(tree, MerkleTree.build(range, depth, entriesOf(range, contents)));
      }),
      { numRuns: 150 },
    );
  });

  it('two trees with the same contents have equal roots regardless of insertion order', () => {
    const contentsArb = fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 80 });
    fc.assert(
      fc.property(rangeArb, depthArb, contentsArb, fc.integer(), (range, depth, keys, seed) => {
        const entries = entriesOf(range, new Map(keys.map((k) => [`k${k}`, `v${k % 3}`])));
        const shuffled = entries
          .map((e, i) => ({ e, order: Math.imul(i + 1, seed | 1) ^ (i * 2654435761) }))
          .sort((x, y) => x.order - y.order)
          .map(({ e }) => e);
        const a = new MerkleTree(range, depth);
        for (const e of entries) a.update(e.objectKey, e.position, undefined, e.digest);
        const b = new MerkleTree(range, depth);
        for (const e of shuffled) b.update(e.objectKey, e.position, undefined, e.digest);
        expectSameTree(a, b);
        // And a change to any one version shows up at the root.
        const [first] = entries;
        b.update(first!.objectKey, first!.position, first!.digest, digest('changed'));
        expect(a.rootHash().equals(b.rootHash())).toBe(false);
      }),
      { numRuns: 100 },
    );
  });

  it('deleting every key brings the root back to the empty root', () => {
    const tree = MerkleTree.build(
      WRAPPING,
      6,
      entriesOf(
        WRAPPING,
        new Map([
          ['a', '1'],
          ['b', '2'],
        ]),
      ),
    );
    expect(tree.rootHash()).not.toEqual(Buffer.alloc(HASH_BYTES));
    tree.update('a', positionIn(WRAPPING, 'a'), digest('1'), undefined);
    tree.update('b', positionIn(WRAPPING, 'b'), digest('2'), undefined);
    expect(tree.rootHash()).toEqual(Buffer.alloc(HASH_BYTES));
  });

  it('swapping versions between two keys in the same leaf changes the leaf hash', () => {
    const a = new MerkleTree(FULL_RING, 1);
    const b = new MerkleTree(FULL_RING, 1);
    const [p, q] = [t('01'), t('02')];
    a.update('x', p, undefined, digest('1'));
    a.update('y', q, undefined, digest('2'));
    b.update('x', p, undefined, digest('2'));
    b.update('y', q, undefined, digest('1'));
    expect(MerkleTree.diff(a, b)).toEqual([0]);
  });

  it('an update that keeps the same digest changes no hash', () => {
    const tree = MerkleTree.build(QUARTER, 3, entriesOf(QUARTER, new Map([['a', '1']])));
    const before = tree.level(3);
    tree.update('a', positionIn(QUARTER, 'a'), digest('1'), digest('1'));
    tree.update('b', positionIn(QUARTER, 'b'), undefined, undefined);
    expect(tree.level(3)).toEqual(before);
  });

  it('returns copies of its hashes, so a caller mutating them cannot corrupt the tree', () => {
    const tree = MerkleTree.build(QUARTER, 2, entriesOf(QUARTER, new Map([['a', '1']])));
    const root = tree.rootHash();
    tree.rootHash().fill(0);
    for (const h of tree.level(2)) h.fill(0);
    for (const h of tree.childrenOf(0, 0)) h.fill(0);
    expect(tree.rootHash()).toEqual(root);
  });
});

describe('MerkleTree ranges and leaves', () => {
  it('keys outside the range are rejected with a clear error', () => {
    const tree = new MerkleTree(QUARTER, 4);
    const outside = t('c0');
    expect(() => tree.update('k', outside, undefined, digest('1'))).toThrow(
      `merkle: position ${outside} of key 'k' is outside the tree's range (${QUARTER.start}, ${QUARTER.end}]`,
    );
    // The start is exclusive, the end inclusive.
    expect(() => tree.update('k', QUARTER.start, undefined, digest('1'))).toThrow(RangeError);
    expect(() => tree.update('k', QUARTER.end, undefined, digest('1'))).not.toThrow();
    expect(() =>
      MerkleTree.build(QUARTER, 4, [{ objectKey: 'k', position: outside, digest: digest('1') }]),
    ).toThrow(/outside the tree's range/);
    expect(() => tree.leafIndexOf('not-a-token')).toThrow(/must be a token/);
  });

  it('leaves split the range evenly, each leaf ending on its inclusive boundary', () => {
    const tree = new MerkleTree(FULL_RING, 2);
    expect([0, 1, 2, 3].map((i) => tree.leafRange(i))).toEqual([
      { start: t('00'), end: t('40') },
      { start: t('40'), end: t('80') },
      { start: t('80'), end: t('c0') },
      { start: t('c0'), end: t('00') },
    ]);
    expect(tree.leafIndexOf(t('40'))).toBe(0);
    expect(tree.leafIndexOf(toToken(big(t('40')) + 1n))).toBe(1);
    // On the whole ring the start itself is the last position, so it belongs to the last leaf.
    expect(tree.leafIndexOf(t('00'))).toBe(3);
    expect(tree.leafIndexOf('f'.repeat(32))).toBe(3);
  });

  it('a wrapping range (end < start) holds keys on both sides of the top of the ring', () => {
    const tree = new MerkleTree(WRAPPING, 1);
    expect(inTokenRange('f'.repeat(32), WRAPPING)).toBe(true);
    expect(inTokenRange(t('00'), WRAPPING)).toBe(true);
    expect(inTokenRange(t('80'), WRAPPING)).toBe(false);
    expect(tree.leafRange(0)).toEqual({ start: t('f0'), end: t('00') });
    expect(tree.leafRange(1)).toEqual({ start: t('00'), end: t('10') });
    tree.update('high', 'f'.repeat(32), undefined, digest('1'));
    tree.update('low', t('08'), undefined, digest('1'));
    expect(tree.level(1).every((h) => !h.equals(Buffer.alloc(HASH_BYTES)))).toBe(true);
    expect(() => tree.update('mid', t('80'), undefined, digest('1'))).toThrow(/outside the tree's range/);
  });

  it('every position in a range falls in the leaf whose leafRange contains it, and leaves tile the range in order', () => {
    fc.assert(
      fc.property(rangeArb, depthArb, fc.array(fc.string(), { maxLength: 20 }), (range, depth, keys) => {
        const tree = new MerkleTree(range, depth);
        expect(tree.leafRange(0).start).toBe(range.start);
        expect(tree.leafRange(tree.leafCount - 1).end).toBe(range.end);
        for (let i = 1; i < tree.leafCount; i++)
          expect(tree.leafRange(i).start).toBe(tree.leafRange(i - 1).end);
        const edges = [range.end, toToken(big(range.start) + 1n)];
        for (const position of [...keys.map((k) => positionIn(range, k)), ...edges]) {
          const leaf = tree.leafIndexOf(position);
          expect(leaf).toBe(expectedLeaf(range, depth, position));
          expect(inTokenRange(position, tree.leafRange(leaf))).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('the whole ring is one range when start equals end', () => {
    const tree = new MerkleTree({ start: t('80'), end: t('80') }, 3);
    for (const position of [t('00'), t('80'), toToken(big(t('80')) + 1n), 'f'.repeat(32)]) {
      expect(() => tree.update(position, position, undefined, digest('1'))).not.toThrow();
    }
  });
});

describe('MerkleTree.diff and compareLevelByLevel', () => {
  const M = 2000;
  const DEPTH = 10;
  const range: TokenRange = { start: t('3'), end: t('2') };
  const base = new Map<string, string>(Array.from({ length: M }, (_, i) => [`key-${i}`, 'v1']));

  const plantArb = fc.uniqueArray(
    fc.record({
      key: fc.integer({ min: 0, max: M + 50 }),
      kind: fc.constantFrom('change', 'delete', 'add'),
    }),
    { minLength: 1, maxLength: 8, selector: (p) => p.key },
  );

  it('finds exactly the leaves holding planted differences, asking for far fewer nodes than a leaf-by-leaf comparison', () => {
    const a = MerkleTree.build(range, DEPTH, entriesOf(range, base));
    fc.assert(
      fc.property(plantArb, (plants) => {
        const b = MerkleTree.build(range, DEPTH, entriesOf(range, base));
        const changed = new Set<string>();
        for (const { key, kind } of plants) {
          const objectKey = `key-${key}`;
          const position = positionIn(range, objectKey);
          const old = base.has(objectKey) ? digest('v1') : undefined;
          // Keys beyond M do not exist on a, so any kind of plant adds them to b only.
          const next = kind === 'delete' && old ? undefined : digest(`v2-${kind}`);
          b.update(objectKey, position, old, next);
          changed.add(objectKey);
        }
        const expected = [...new Set([...changed].map((k) => a.leafIndexOf(positionIn(range, k))))].sort(
          (x, y) => x - y,
        );
        expect(MerkleTree.diff(a, b)).toEqual(expected);
        expect(MerkleTree.diff(b, a)).toEqual(expected);

        let requested = 0;
        let rounds = 0;
        const found = compareLevelByLevel(a, (d, indices) => {
          rounds++;
          requested += indices.length * 2;
          return indices.map((i) => b.childrenOf(d, i));
        });
        expect(found).toEqual(expected);
        expect(rounds).toBeLessThanOrEqual(DEPTH);
        // At most two children per differing node per level, against 1024 leaves for a flat comparison.
        expect(requested).toBeLessThanOrEqual(2 * expected.length * DEPTH);
        expect(requested).toBeLessThan(a.leafCount / 4);
      }),
      { numRuns: 40 },
    );
  });

  it('finds nothing and asks nothing when the remote root matches', () => {
    const a = MerkleTree.build(range, DEPTH, entriesOf(range, base));
    const b = MerkleTree.build(range, DEPTH, entriesOf(range, base).reverse());
    let asked = 0;
    const ask = (d: number, indices: number[]): Buffer[][] => {
      asked++;
      return indices.map((i) => b.childrenOf(d, i));
    };
    expect(compareLevelByLevel(a, ask, b.rootHash())).toEqual([]);
    expect(asked).toBe(0);
    // Without the remote root it costs one round to learn that the root's children agree.
    expect(compareLevelByLevel(a, ask)).toEqual([]);
    expect(asked).toBe(1);
  });

  it('rejects a remote reply of the wrong shape', () => {
    const a = MerkleTree.build(QUARTER, 3, entriesOf(QUARTER, new Map([['a', '1']])));
    expect(() => compareLevelByLevel(a, () => [])).toThrow(/remote answered 0 replies for 1 nodes/);
    expect(() => compareLevelByLevel(a, () => [[Buffer.alloc(HASH_BYTES)]])).toThrow(/malformed children/);
    expect(() => compareLevelByLevel(a, () => [[Buffer.alloc(3), Buffer.alloc(3)]])).toThrow(
      /malformed children/,
    );
  });

  it('refuses to diff trees of different range or depth', () => {
    expect(() => MerkleTree.diff(new MerkleTree(QUARTER, 3), new MerkleTree(QUARTER, 4))).toThrow(
      /different shape/,
    );
    expect(() => MerkleTree.diff(new MerkleTree(QUARTER, 3), new MerkleTree(WRAPPING, 3))).toThrow(
      /different shape/,
    );
  });

  it('rejects node indices outside the tree', () => {
    const tree = new MerkleTree(QUARTER, 3);
    expect(() => tree.node(4, 0)).toThrow(/depth index must be an integer in 0..3/);
    expect(() => tree.node(2, 4)).toThrow(/must be an integer in 0..3, got 4/);
    expect(() => tree.childrenOf(3, 0)).toThrow(/leaves, which have no children/);
    expect(() => tree.leafRange(8)).toThrow(RangeError);
  });
});

describe('MerkleTree.serialize and deserialize', () => {
  it('round-trip the range, depth and every level, and the reloaded tree keeps updating like the original', () => {
    fc.assert(
      fc.property(
        rangeArb,
        depthArb,
        fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: 300 }),
        (range, depth, keys) => {
          const contents = new Map(keys.map((k) => [`k${k}`, `v${k}`]));
          const tree = MerkleTree.build(range, depth, entriesOf(range, contents));
          const copy = MerkleTree.deserialize(tree.serialize());
          expect(copy.range).toEqual(range);
          expect(copy.depth).toBe(depth);
          expectSameTree(copy, tree);
          for (const t2 of [tree, copy])
            t2.update('extra', positionIn(range, 'extra'), undefined, digest('x'));
          expectSameTree(copy, tree);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('stores only the set leaves of a sparse tree', () => {
    const empty = new MerkleTree(QUARTER, 16).serialize();
    expect(empty.length).toBeLessThan(64);
    const one = MerkleTree.build(QUARTER, 16, entriesOf(QUARTER, new Map([['a', '1']]))).serialize();
    expect(one.length).toBe(empty.length + 2 + HASH_BYTES);
    expect(MerkleTree.deserialize(empty).rootHash()).toEqual(Buffer.alloc(HASH_BYTES));
  });

  it('rejects truncated, corrupted or foreign bytes with a clear error', () => {
    const bytes = MerkleTree.build(QUARTER, 4, entriesOf(QUARTER, new Map([['a', '1']]))).serialize();
    expect(() => MerkleTree.deserialize(bytes.subarray(0, 10))).toThrow(/cannot deserialize tree: 10 bytes/);
    expect(() => MerkleTree.deserialize(bytes.subarray(0, bytes.length - 1))).toThrow(/checksum mismatch/);
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 20] = (flipped[flipped.length - 20] as number) ^ 1;
    expect(() => MerkleTree.deserialize(flipped)).toThrow(/checksum mismatch/);
    expect(() => MerkleTree.deserialize(Buffer.alloc(bytes.length))).toThrow(/bad magic/);
  });
});

describe('MerkleTree shape validation', () => {
  it('accepts depths 1 through 16 and defaults to 10', () => {
    expect(new MerkleTree(QUARTER).depth).toBe(10);
    expect(new MerkleTree(QUARTER).leafCount).toBe(1024);
    expect(new MerkleTree(QUARTER, 1).leafCount).toBe(2);
    expect(new MerkleTree(QUARTER, 16).leafCount).toBe(65536);
  });

  it('rejects a depth that is not an integer from 1 to 16', () => {
    for (const depth of [0, 17, -1, 2.5, Number.NaN]) {
      expect(() => new MerkleTree(QUARTER, depth)).toThrow(/depth must be an integer in 1..16/);
    }
  });

  it('rejects invalid range tokens and a range narrower than its leaf count', () => {
    expect(() => new MerkleTree({ start: 'xyz', end: t('80') })).toThrow(/range start must be a token/);
    expect(() => new MerkleTree({ start: t('40'), end: t('a0').toUpperCase() })).toThrow(
      /range end must be a token/,
    );
    const narrow = { start: t('40'), end: toToken(big(t('40')) + 4n) };
    expect(() => new MerkleTree(narrow, 2)).not.toThrow();
    expect(() => new MerkleTree(narrow, 3)).toThrow(/holds 4 positions, fewer than its 8 leaves/);
  });
});

describe('whole-ring leaf index fast path', () => {
  it('puts every position, including exact leaf boundaries, in the same leaf as the BigInt computation', () => {
    const whole = new MerkleTree({ start: '0'.repeat(32), end: '0'.repeat(32) }, 10);
    const slow = (p: string) =>
      Number((((BigInt(`0x${p}`) - 1n + (1n << 128n)) % (1n << 128n)) * 1024n) / (1n << 128n));
    const boundaries = [0, 1, 511, 512, 1023].map((i) => (BigInt(i) << 118n).toString(16).padStart(32, '0'));
    const randoms = Array.from({ length: 2000 }, (_, i) =>
      pairHash(`k${i}`, Buffer.alloc(1)).toString('hex'),
    );
    for (const p of [...boundaries, ...randoms, 'f'.repeat(32), `${'0'.repeat(31)}1`]) {
      expect(whole.leafIndexOf(p), p).toBe(slow(p));
    }
  });
});
