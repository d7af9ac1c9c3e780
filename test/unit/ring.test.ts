import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateTokens, hashKey, isToken, Ring, type RingMember } from '../../node/src/ring/index.js';

/** A token from a hex prefix padded with zeros, e.g. t('40') = '4000…0'. */
const t = (prefix: string): string => prefix.padEnd(32, '0');

/** Members with the default generated tokens. */
function nodes(ids: readonly string[], tokensEach: number, rackOf?: (i: number) => string): RingMember[] {
  return ids.map((id, i) => ({
    id,
    tokens: generateTokens(id, tokensEach),
    ...(rackOf ? { rack: rackOf(i) } : {}),
  }));
}

const ids = (count: number): string[] => Array.from({ length: count }, (_, i) => `node-${i + 1}`);

/** Key positions that are deterministic across runs but spread like random ones. */
const keyPositions = (count: number): string[] =>
  Array.from({ length: count }, (_, i) => hashKey('b', `k${i}`));

// A, B, C, D at the four quarter marks, so every expected answer can be worked out by hand.
const quarters = new Ring([
  { id: 'A', tokens: [t('00')] },
  { id: 'B', tokens: [t('40')] },
  { id: 'C', tokens: [t('80')] },
  { id: 'D', tokens: [t('c0')] },
]);

describe('hashKey', () => {
  it('is the MD5 of bucket/key as 32 lowercase hex chars', () => {
    const expected = createHash('md5').update('b/k').digest('hex');
    expect(hashKey('b', 'k')).toBe(expected);
    expect(hashKey('b', 'k')).toMatch(/^[0-9a-f]{32}$/);
  });

  it('separates the bucket from the key so that moving a character between them changes the position', () => {
    expect(hashKey('ab', 'c')).not.toBe(hashKey('a', 'bc'));
  });
});

describe('generateTokens', () => {
  it('produces the same tokens for the same node every time', () => {
    expect(generateTokens('node-1', 16)).toEqual(generateTokens('node-1', 16));
  });

  it('produces the requested number of valid, distinct tokens', () => {
    const tokens = generateTokens('node-1', 256);
    expect(tokens).toHaveLength(256);
    expect(tokens.every(isToken)).toBe(true);
    expect(new Set(tokens).size).toBe(256);
  });

  it('derives token i from the MD5 of nodeId#i', () => {
    const expected = createHash('md5').update('node-1#3').digest('hex');
    expect(generateTokens('node-1', 4)[3]).toBe(expected);
  });

  it('gives different nodes different tokens', () => {
    expect(generateTokens('node-1', 8)).not.toEqual(generateTokens('node-2', 8));
  });
});

describe('isToken', () => {
  it('accepts exactly 32 lowercase hex chars and nothing else', () => {
    expect(isToken(t('ab'))).toBe(true);
    expect(isToken(t('AB'))).toBe(false);
    expect(isToken('0'.repeat(31))).toBe(false);
    expect(isToken('0'.repeat(33))).toBe(false);
    expect(isToken(`${'0'.repeat(31)}g`)).toBe(false);
  });
});

describe('Ring.preferenceList', () => {
  it('starts at the owner of the first token at or after the position', () => {
    expect(quarters.preferenceList(t('01'), 1)).toEqual(['B']);
    expect(quarters.preferenceList(t('3f'), 3)).toEqual(['B', 'C', 'D']);
  });

  it('gives a position equal to a token to that token owner', () => {
    expect(quarters.preferenceList(t('40'), 3)).toEqual(['B', 'C', 'D']);
    expect(quarters.preferenceList(t('00'), 2)).toEqual(['A', 'B']);
  });

  it('wraps past the largest token to the smallest', () => {
    expect(quarters.preferenceList('f'.repeat(32), 3)).toEqual(['A', 'B', 'C']);
    expect(quarters.preferenceList(t('c1'), 2)).toEqual(['A', 'B']);
    expect(quarters.preferenceList(t('c0'), 3)).toEqual(['D', 'A', 'B']);
  });

  it('lists each physical node once even when it owns consecutive tokens', () => {
    const ring = new Ring([
      { id: 'A', tokens: [t('10'), t('20'), t('30')] },
      { id: 'B', tokens: [t('40'), t('50')] },
      { id: 'C', tokens: [t('60')] },
    ]);
    expect(ring.preferenceList(t('00'), 3)).toEqual(['A', 'B', 'C']);
    expect(ring.preferenceList(t('45'), 3)).toEqual(['B', 'C', 'A']);
  });

  it('returns n distinct nodes on a ring with many tokens', () => {
    const ring = new Ring(nodes(ids(8), 64));
    for (const position of keyPositions(500)) {
      const list = ring.preferenceList(position, 3);
      expect(list).toHaveLength(3);
      expect(new Set(list).size).toBe(3);
    }
  });

  it('returns every node, and no more, when the ring has fewer nodes than n', () => {
    expect(quarters.preferenceList(t('50'), 10)).toEqual(['C', 'D', 'A', 'B']);
    const single = new Ring([{ id: 'only', tokens: generateTokens('only', 8) }]);
    expect(single.preferenceList(hashKey('b', 'k'), 3)).toEqual(['only']);
  });

  it('gives the same answer on repeated lookups, unaffected by callers editing a returned list', () => {
    const first = quarters.preferenceList(t('50'), 3);
    first.push('X');
    first[0] = 'Y';
    expect(quarters.preferenceList(t('50'), 3)).toEqual(['C', 'D', 'A']);
    expect(quarters.preferenceList(t('60'), 3)).toEqual(['C', 'D', 'A']);
  });

  it('rejects an n that is not a positive integer with a RangeError', () => {
    expect(() => quarters.preferenceList(t('00'), 0)).toThrow(RangeError);
    expect(() => quarters.preferenceList(t('00'), -1)).toThrow(RangeError);
    expect(() => quarters.preferenceList(t('00'), 1.5)).toThrow(RangeError);
    expect(() => quarters.preferenceList(t('00'), Number.NaN)).toThrow(RangeError);
  });

  it('rejects a position that is not a token with a RangeError', () => {
    expect(() => quarters.preferenceList('abc', 1)).toThrow(RangeError);
  });
});

describe('Ring.preferenceList with racks', () => {
  it('skips a node whose rack is already used, then fills the remaining slots clockwise', () => {
    const ring = new Ring([
      { id: 'A', tokens: [t('00')], rack: 'r1' },
      { id: 'B', tokens: [t('40')], rack: 'r1' },
      { id: 'C', tokens: [t('80')], rack: 'r2' },
      { id: 'D', tokens: [t('c0')], rack: 'r2' },
    ]);
    expect(ring.preferenceList(t('00'), 2)).toEqual(['A', 'C']);
    expect(ring.preferenceList(t('00'), 3)).toEqual(['A', 'C', 'B']);
    expect(ring.preferenceList(t('00'), 4)).toEqual(['A', 'C', 'B', 'D']);
  });

  it('spans three racks in every list of three when six nodes sit in three racks', () => {
    const members = nodes(ids(6), 64, (i) => `rack-${i % 3}`);
    const rackOf = new Map(members.map((m) => [m.id, m.rack]));
    const ring = new Ring(members);
    for (const position of keyPositions(5_000)) {
      const racks = new Set(ring.preferenceList(position, 3).map((id) => rackOf.get(id)));
      expect(racks.size).toBe(3);
    }
  });

  it('still returns three distinct nodes, covering both racks, when there are only two racks', () => {
    const members = nodes(ids(6), 64, (i) => `rack-${i % 2}`);
    const rackOf = new Map(members.map((m) => [m.id, m.rack]));
    const ring = new Ring(members);
    for (const position of keyPositions(2_000)) {
      const list = ring.preferenceList(position, 3);
      expect(new Set(list).size).toBe(3);
      expect(new Set(list.slice(0, 2).map((id) => rackOf.get(id))).size).toBe(2);
    }
  });

  it('treats a node without a rack as sharing a failure domain with no one', () => {
    const ring = new Ring([
      { id: 'A', tokens: [t('00')], rack: 'r1' },
      { id: 'B', tokens: [t('40')], rack: 'r1' },
      { id: 'C', tokens: [t('80')] },
    ]);
    expect(ring.preferenceList(t('00'), 2)).toEqual(['A', 'C']);
  });
});

describe('Ring.ownership', () => {
  it('gives each of four evenly spaced nodes exactly a quarter as primary and half with n=2', () => {
    for (const share of quarters.ownership().values()) expect(share).toBe(0.25);
    for (const share of quarters.ownership(2).values()) expect(share).toBe(0.5);
  });

  it('counts the arc from the last token round to the first as the first token owner', () => {
    const ring = new Ring([
      { id: 'A', tokens: [t('10')] },
      { id: 'B', tokens: [t('d0')] },
    ]);
    const shares = ring.ownership(1);
    // A owns (d0, ff] plus [00, 10]: 0x40 of every 0x100.
    expect(shares.get('A')).toBeCloseTo(0.25, 12);
    expect(shares.get('B')).toBeCloseTo(0.75, 12);
  });

  it('gives a single node with a single token the whole ring', () => {
    const ring = new Ring([{ id: 'only', tokens: [t('42')] }]);
    expect(ring.ownership(1)).toEqual(new Map([['only', 1]]));
    expect(ring.ownership(3)).toEqual(new Map([['only', 1]]));
  });

  it('rejects an n that is not a positive integer with a RangeError', () => {
    expect(() => quarters.ownership(0)).toThrow(RangeError);
  });
});

describe('Ring distribution', () => {
  const ring = new Ring(nodes(ids(5), 256));
  const positions = keyPositions(100_000);
  const primaryCounts = new Map<string, number>();
  for (const position of positions) {
    const [primary] = ring.preferenceList(position, 1);
    primaryCounts.set(primary!, (primaryCounts.get(primary!) ?? 0) + 1);
  }

  it('gives each of five nodes with 256 tokens a primary share within 15% of a fifth', () => {
    expect(primaryCounts.size).toBe(5);
    for (const count of primaryCounts.values()) {
      const share = count / positions.length;
      expect(share).toBeGreaterThan(0.2 * 0.85);
      expect(share).toBeLessThan(0.2 * 1.15);
    }
  });

  it('has primary shares summing to 1 and replica shares for n=3 summing to 3', () => {
    const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
    expect(Math.abs(sum(ring.ownership(1)) - 1)).toBeLessThan(1e-9);
    expect(Math.abs(sum(ring.ownership(3)) - 3)).toBeLessThan(1e-9);
  });

  it('predicts the share of keys each node receives as primary', () => {
    for (const [id, share] of ring.ownership(1)) {
      const empirical = (primaryCounts.get(id) ?? 0) / positions.length;
      expect(Math.abs(empirical - share)).toBeLessThan(0.01);
    }
  });

  it('predicts the share of keys each node holds a replica of with n=3', () => {
    const replicaCounts = new Map<string, number>();
    for (const position of positions.slice(0, 20_000)) {
      for (const id of ring.preferenceList(position, 3))
        replicaCounts.set(id, (replicaCounts.get(id) ?? 0) + 1);
    }
    for (const [id, share] of ring.ownership(3)) {
      const empirical = (replicaCounts.get(id) ?? 0) / 20_000;
      expect(Math.abs(empirical - share)).toBeLessThan(0.02);
    }
  });
});

describe('Ring stability', () => {
  it('moves only the keys the new node now owns, about a sixth of them, when a sixth node joins five', () => {
    const before = new Ring(nodes(ids(5), 256));
    const after = new Ring(nodes(ids(6), 256));
    const positions = keyPositions(50_000);
    let moved = 0;
    for (const position of positions) {
      const [was] = before.preferenceList(position, 1);
      const [now] = after.preferenceList(position, 1);
      if (was !== now) {
        moved++;
        expect(now).toBe('node-6');
      }
    }
    const fraction = moved / positions.length;
    expect(fraction).toBeGreaterThan(0.1);
    expect(fraction).toBeLessThan(0.25);
  });
});

describe('Ring construction', () => {
  it('reports the number of distinct physical nodes as its size', () => {
    expect(quarters.size).toBe(4);
    expect(new Ring(nodes(ids(3), 16)).size).toBe(3);
  });

  it('exposes its members', () => {
    expect(quarters.members.map((m) => m.id)).toEqual(['A', 'B', 'C', 'D']);
  });

  it('rejects an empty member list', () => {
    expect(() => new Ring([])).toThrow(/at least one member/);
  });

  it('rejects two members with the same id', () => {
    expect(() => new Ring([...nodes(['a'], 2), { id: 'a', tokens: [t('77')] }])).toThrow(
      /duplicate member id 'a'/,
    );
  });

  it('rejects a member with no tokens', () => {
    expect(() => new Ring([{ id: 'a', tokens: [] }])).toThrow(/'a' has no tokens/);
  });

  it('rejects an invalid token, naming the member and the token', () => {
    expect(() => new Ring([{ id: 'a', tokens: ['ABC'] }])).toThrow(/'a' has invalid token 'ABC'/);
    expect(() => new Ring([{ id: 'a', tokens: [t('AB')] }])).toThrow(/invalid token/);
  });

  it('rejects a token owned by two members', () => {
    expect(
      () =>
        new Ring([
          { id: 'a', tokens: [t('10')] },
          { id: 'b', tokens: [t('20'), t('10')] },
        ]),
    ).toThrow(/owned by both 'a' and 'b'/);
  });

  it('rejects a token listed twice by the same member', () => {
    expect(() => new Ring([{ id: 'a', tokens: [t('10'), t('10')] }])).toThrow(/owned by both 'a' and 'a'/);
  });

  it('is not changed by later edits to the member list it was built from', () => {
    const members: RingMember[] = [
      { id: 'A', tokens: [t('00')] },
      { id: 'B', tokens: [t('80')] },
    ];
    const ring = new Ring(members);
    members.push({ id: 'C', tokens: [t('40')] });
    (members[0]!.tokens as string[]).push(t('60'));
    expect(ring.size).toBe(2);
    expect(ring.preferenceList(t('50'), 1)).toEqual(['B']);
    expect(ring.members[0]!.tokens).toEqual([t('00')]);
  });
});
