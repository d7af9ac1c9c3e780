import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../bench/random.js';
import { keyName } from '../../bench/workload.js';
import { fnvhash64, ScrambledZipfianGenerator, ZipfianGenerator, zeta } from '../../bench/zipfian.js';

function counts(next: () => number, samples: number): Map<number, number> {
  const seen = new Map<number, number>();
  for (let i = 0; i < samples; i++) {
    const v = next();
    seen.set(v, (seen.get(v) ?? 0) + 1);
  }
  return seen;
}

function observedRange(next: () => number, samples: number) {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let allIntegers = true;
  for (let i = 0; i < samples; i++) {
    const v = next();
    if (!Number.isInteger(v)) allIntegers = false;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return { min, max, allIntegers };
}

/** Items sorted by how often they were drawn, most popular first. */
function byPopularity(seen: Map<number, number>): [number, number][] {
  return [...seen.entries()].sort((a, b) => b[1] - a[1]);
}

describe('fnvhash64', () => {
  it('matches YCSB: record 0 becomes the well-known key user6284781860667377211', () => {
    expect(fnvhash64(0n)).toBe(6284781860667377211n);
    expect(keyName(0)).toBe('user6284781860667377211');
  });

  it('is never negative and accepts numbers beyond 2^53', () => {
    const rng = new SeededRandom(7);
    for (let i = 0; i < 1000; i++) {
      const h = fnvhash64(Math.floor(rng.nextDouble() * 1e16));
      expect(h >= 0n && h <= 1n << 63n).toBe(true);
    }
  });
});

describe('zeta', () => {
  it('sums 1/i^theta and continues a partial sum', () => {
    expect(zeta(3, 1)).toBeCloseTo(1 + 1 / 2 + 1 / 3, 12);
    expect(zeta(10, 0.99, 4, zeta(4, 0.99))).toBeCloseTo(zeta(10, 0.99), 12);
  });
});

describe('ZipfianGenerator', () => {
  it('stays within [min, max]', () => {
    const gen = new ZipfianGenerator(100, 1099, new SeededRandom(1));
    const range = observedRange(() => gen.next(), 100_000);
    expect(range.allIntegers).toBe(true);
    expect(range.min).toBe(100);
    expect(range.max).toBeLessThanOrEqual(1099);
  });

  it('makes min the most popular item, far above the median item', () => {
    const gen = new ZipfianGenerator(0, 999, new SeededRandom(2));
    const seen = counts(() => gen.next(), 200_000);
    const ranked = byPopularity(seen);
    expect(ranked[0]?.[0]).toBe(0);
    const all = Array.from({ length: 1000 }, (_, i) => seen.get(i) ?? 0).sort((a, b) => a - b);
    const median = all[500]!;
    expect(ranked[0]![1]).toBeGreaterThan(50 * Math.max(1, median));
    // theta 0.99 over 1000 items: the top item gets about 1/zeta(1000) ≈ 13% of draws
    expect(ranked[0]![1] / 200_000).toBeCloseTo(1 / zeta(1000, 0.99), 1);
  });
});

describe('ScrambledZipfianGenerator', () => {
  const records = 10_000;
  const samples = 200_000;

  it('stays within [min, max]', () => {
    const gen = new ScrambledZipfianGenerator(5, 5 + records - 1, new SeededRandom(3));
    const range = observedRange(() => gen.next(), samples);
    expect(range.allIntegers).toBe(true);
    expect(range.min).toBeGreaterThanOrEqual(5);
    expect(range.max).toBeLessThan(5 + records);
  });

  it('is skewed: the hottest key gets far more hits than the median key', () => {
    const gen = new ScrambledZipfianGenerator(0, records - 1, new SeededRandom(4));
    const seen = counts(() => gen.next(), samples);
    const hottest = byPopularity(seen)[0]![1];
    const all = Array.from({ length: records }, (_, i) => seen.get(i) ?? 0).sort((a, b) => a - b);
    const median = all[records / 2]!;
    expect(hottest).toBeGreaterThan(100 * Math.max(1, median));
    // the ten hottest of 10,000 keys take far more than their uniform 0.1% share
    const top10 = byPopularity(seen)
      .slice(0, 10)
      .reduce((sum, [, n]) => sum + n, 0);
    expect(top10 / samples).toBeGreaterThan(0.05);
  });

  it('spreads the hot keys across the key space instead of clustering them at the start', () => {
    const plain = new ZipfianGenerator(0, records - 1, new SeededRandom(5));
    const plainTop = byPopularity(counts(() => plain.next(), samples))
      .slice(0, 20)
      .map(([item]) => item);
    expect(Math.max(...plainTop)).toBeLessThan(records / 100);

    const scrambled = new ScrambledZipfianGenerator(0, records - 1, new SeededRandom(5));
    const hotTop = byPopularity(counts(() => scrambled.next(), samples))
      .slice(0, 20)
      .map(([item]) => item);
    const deciles = new Set(hotTop.map((item) => Math.floor((item / records) * 10)));
    expect(deciles.size).toBeGreaterThanOrEqual(5);
    expect(Math.max(...hotTop) - Math.min(...hotTop)).toBeGreaterThan(records / 2);
  });

  it('is reproducible from the seed', () => {
    const a = new ScrambledZipfianGenerator(0, records - 1, new SeededRandom(42));
    const b = new ScrambledZipfianGenerator(0, records - 1, new SeededRandom(42));
    const seqA = Array.from({ length: 100 }, () => a.next());
    const seqB = Array.from({ length: 100 }, () => b.next());
    expect(seqA).toEqual(seqB);
  });
});
