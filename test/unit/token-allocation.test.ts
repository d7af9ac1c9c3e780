import { afterAll, describe, expect, it } from 'vitest';
import { allocateCluster, allocateTokens, ownershipImbalance } from '../../node/src/ring/allocation.js';
import { generateTokens, isToken, Ring } from '../../node/src/ring/index.js';

type Member = { id: string; tokens: string[] };

const N = 3;
const LARGEST = 64;
const REPORTED_SIZES = [3, 4, 8, 16, 32, 64];

/** Clusters grown one node at a time to LARGEST nodes, by tokens per node: growing them is the slow part, so once. */
const grown = new Map<number, Member[]>();
function grownCluster(tokensPerNode: number): Member[] {
  let cluster = grown.get(tokensPerNode);
  if (cluster === undefined) {
    cluster = allocateCluster(LARGEST, tokensPerNode, N);
    grown.set(tokensPerNode, cluster);
  }
  return cluster;
}

/** The default tokens a node would pick on its own (MD5 of id#i), for comparison. */
const randomCluster = (count: number, tokensPerNode: number): Member[] =>
  Array.from({ length: count }, (_, i) => ({
    id: `node-${i}`,
    tokens: generateTokens(`node-${i}`, tokensPerNode),
  }));

/** Imbalance (max/min replica ownership - 1) by column and cluster size, printed once all tests ran. */
const report = new Map<string, Map<number, number>>();
function record(column: string, size: number, imbalance: number): void {
  const bySize = report.get(column) ?? new Map<number, number>();
  bySize.set(size, imbalance);
  report.set(column, bySize);
}

afterAll(() => {
  const columns = [...report.keys()];
  const cell = (column: string, size: number): string => {
    const value = report.get(column)?.get(size);
    return (value === undefined ? '-' : `${(value * 100).toFixed(2)}%`).padStart(column.length);
  };
  const lines = [
    `replica ownership imbalance, max/min - 1, n=${N}`,
    `nodes  ${columns.join('  ')}`,
    ...REPORTED_SIZES.map(
      (size) => `${String(size).padStart(5)}  ${columns.map((c) => cell(c, size)).join('  ')}`,
    ),
  ];
  console.log(lines.join('\n'));
});

describe('allocateTokens balance', () => {
  it('keeps replica ownership within 5% at every cluster size from 3 to 64 nodes with 16 tokens per node', () => {
    const cluster = grownCluster(16);
    for (let size = 3; size <= LARGEST; size++) {
      const imbalance = ownershipImbalance(cluster.slice(0, size), N);
      record('allocated, 16 tokens', size, imbalance);
      expect(imbalance, `${size} nodes`).toBeLessThanOrEqual(0.05);
    }
  });

  it('keeps replica ownership within 1% at every cluster size from 3 to 64 nodes with 256 tokens per node', () => {
    const cluster = grownCluster(256);
    for (let size = 3; size <= LARGEST; size++) {
      const imbalance = ownershipImbalance(cluster.slice(0, size), N);
      record('allocated, 256 tokens', size, imbalance);
      expect(imbalance, `${size} nodes`).toBeLessThanOrEqual(0.01);
    }
  });

  it('balances several times better than random tokens from generateTokens', () => {
    for (const tokensPerNode of [16, 256]) {
      const random = randomCluster(LARGEST, tokensPerNode);
      for (const size of REPORTED_SIZES.filter((s) => s > N)) {
        const allocated = ownershipImbalance(grownCluster(tokensPerNode).slice(0, size), N);
        const baseline = ownershipImbalance(random.slice(0, size), N);
        record(`random, ${tokensPerNode} tokens`, size, baseline);
        expect(allocated, `${size} nodes, ${tokensPerNode} tokens`).toBeLessThan(baseline / 5);
      }
    }
  });

  it('balances replica ownership for replication factors other than 3', () => {
    for (const n of [1, 2, 5]) {
      const cluster = allocateCluster(16, 16, n);
      for (let size = Math.max(n, 2); size <= cluster.length; size++) {
        expect(ownershipImbalance(cluster.slice(0, size), n), `n=${n}, ${size} nodes`).toBeLessThanOrEqual(
          0.1,
        );
      }
    }
  });

  it('gives a node with twice the tokens about twice the replica ownership', () => {
    const existing = grownCluster(16).slice(0, 8);
    const tokens = allocateTokens({ existing, newNode: 'big', tokens: 32, n: N });
    const ownership = new Ring([...existing, { id: 'big', tokens }]).ownership(N);
    const others = existing.map((m) => ownership.get(m.id) ?? 0);
    const mean = others.reduce((sum, share) => sum + share, 0) / others.length;
    expect((ownership.get('big') ?? 0) / mean).toBeCloseTo(2, 1);
    expect(Math.max(...others) / Math.min(...others) - 1).toBeLessThanOrEqual(0.05);
  });
});

describe('allocateTokens contract', () => {
  it('leaves the existing members and their tokens untouched', () => {
    const existing = grownCluster(16).slice(0, 10);
    const before = structuredClone(existing);
    allocateTokens({ existing, newNode: 'node-new', tokens: 16, n: N });
    expect(existing).toEqual(before);
  });

  it('never revises the tokens of nodes already in the cluster as it grows', () => {
    expect(allocateCluster(12, 16, N)).toEqual(grownCluster(16).slice(0, 12));
  });

  it('returns the same tokens for the same input', () => {
    const input = { existing: grownCluster(16).slice(0, 20), newNode: 'node-new', tokens: 16, n: N };
    expect(allocateTokens(input)).toEqual(allocateTokens(structuredClone(input)));
  });

  it('does not depend on the order in which members or their tokens are listed', () => {
    const existing = grownCluster(16).slice(0, 20);
    const shuffled = [...existing].reverse().map((m) => ({ id: m.id, tokens: [...m.tokens].reverse() }));
    expect(allocateTokens({ existing: shuffled, newNode: 'node-new', tokens: 16, n: N })).toEqual(
      allocateTokens({ existing, newNode: 'node-new', tokens: 16, n: N }),
    );
  });

  it('returns the requested number of distinct valid tokens that no existing member holds', () => {
    const cases: Array<{ existing: Member[]; tokens: number; n: number }> = [
      { existing: grownCluster(16).slice(0, 1), tokens: 16, n: N },
      { existing: grownCluster(16).slice(0, 2), tokens: 16, n: N },
      { existing: grownCluster(16).slice(0, 30), tokens: 16, n: N },
      { existing: grownCluster(16).slice(0, 5), tokens: 100, n: N },
      { existing: grownCluster(16).slice(0, 5), tokens: 1, n: 1 },
      // Two tokens two apart: the arc between them has room for exactly one more.
      { existing: [{ id: 'a', tokens: [`${'0'.repeat(31)}1`, `${'0'.repeat(31)}3`] }], tokens: 40, n: 5 },
    ];
    for (const { existing, tokens: count, n } of cases) {
      const tokens = allocateTokens({ existing, newNode: 'node-new', tokens: count, n });
      const taken = new Set(existing.flatMap((m) => m.tokens));
      expect(tokens).toHaveLength(count);
      expect(new Set(tokens).size).toBe(count);
      for (const token of tokens) {
        expect(isToken(token), token).toBe(true);
        expect(taken.has(token), token).toBe(false);
      }
    }
  });

  it('gives every node of a grown cluster distinct valid tokens', () => {
    const all = grownCluster(16).flatMap((m) => m.tokens);
    expect(all).toHaveLength(LARGEST * 16);
    expect(new Set(all).size).toBe(all.length);
    expect(all.every(isToken)).toBe(true);
  });

  it('gives the first node of an empty ring evenly spaced tokens', () => {
    expect(allocateTokens({ existing: [], newNode: 'node-0', tokens: 4, n: N })).toEqual([
      '00000000000000000000000000000000',
      '40000000000000000000000000000000',
      '80000000000000000000000000000000',
      'c0000000000000000000000000000000',
    ]);
  });

  it('rejects a replication factor or token count below 1 or not an integer', () => {
    const existing = grownCluster(16).slice(0, 3);
    expect(() => allocateTokens({ existing, newNode: 'x', tokens: 16, n: 0 })).toThrow(
      /n must be an integer >= 1, got 0/,
    );
    expect(() => allocateTokens({ existing, newNode: 'x', tokens: 16, n: 2.5 })).toThrow(
      /n must be an integer >= 1, got 2.5/,
    );
    expect(() => allocateTokens({ existing, newNode: 'x', tokens: 0, n: N })).toThrow(
      /tokens must be an integer >= 1, got 0/,
    );
    expect(() => allocateTokens({ existing: [], newNode: 'x', tokens: -1, n: N })).toThrow(
      /tokens must be an integer >= 1, got -1/,
    );
  });

  it('rejects a new node whose id is already a member', () => {
    const existing = grownCluster(16).slice(0, 3);
    expect(() => allocateTokens({ existing, newNode: 'node-1', tokens: 16, n: N })).toThrow(
      /node 'node-1' is already a member of the ring/,
    );
  });

  it('rejects an existing ring with malformed or shared tokens', () => {
    expect(() =>
      allocateTokens({ existing: [{ id: 'a', tokens: ['not-a-token'] }], newNode: 'x', tokens: 4, n: N }),
    ).toThrow(/invalid token 'not-a-token'/);
    const token = '40000000000000000000000000000000';
    expect(() =>
      allocateTokens({
        existing: [
          { id: 'a', tokens: [token] },
          { id: 'b', tokens: [token] },
        ],
        newNode: 'x',
        tokens: 4,
        n: N,
      }),
    ).toThrow(/owned by both 'a' and 'b'/);
  });
});
