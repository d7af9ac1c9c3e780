import { describe, expect, it } from 'vitest';
import { bucketIndex, bucketRange, LatencyHistogram } from '../../bench/histogram.js';
import { SeededRandom } from '../../bench/random.js';

/** Nearest-rank percentile of sorted values. */
function exactPercentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Log-normal samples (latency-like: a body and a long tail), rounded to whole microseconds. */
function logNormal(rng: SeededRandom, n: number, median: number, sigma: number): number[] {
  return Array.from({ length: n }, () => {
    const u1 = 1 - rng.nextDouble();
    const u2 = rng.nextDouble();
    const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    return Math.round(median * Math.exp(sigma * z));
  });
}

describe('histogram buckets', () => {
  it('are contiguous and each value falls inside its bucket', () => {
    let previousEnd = 0;
    for (let index = 0; index < 2000; index++) {
      const { low, width } = bucketRange(index);
      expect(low).toBe(previousEnd);
      expect(bucketIndex(low)).toBe(index);
      expect(bucketIndex(low + width - 1)).toBe(index);
      if (low >= 256) expect(width / low).toBeLessThanOrEqual(1 / 128);
      else expect(width).toBe(1);
      previousEnd = low + width;
    }
    expect(bucketIndex(2 ** 32 - 1)).toBe(bucketIndex(2 ** 32 - 2));
  });
});

describe('LatencyHistogram', () => {
  it('reports percentiles within 1% of the exact ones on random latency-like data', () => {
    const rng = new SeededRandom(11);
    for (const [median, sigma] of [
      [800, 0.5],
      [2_000, 1.2],
      [50_000, 2],
    ] as const) {
      const values = logNormal(rng, 100_000, median, sigma);
      const h = new LatencyHistogram();
      for (const v of values) h.record(v);
      const sorted = [...values].sort((a, b) => a - b);
      for (const p of [1, 10, 50, 90, 95, 99, 99.9, 99.99]) {
        const exact = exactPercentile(sorted, p);
        expect(Math.abs(h.percentile(p) - exact) / exact).toBeLessThanOrEqual(0.01);
      }
      expect(h.max).toBe(sorted[sorted.length - 1]);
      expect(h.min).toBe(sorted[0]);
      expect(h.count).toBe(values.length);
    }
  });

  it('is exact for small values', () => {
    const h = new LatencyHistogram();
    for (let v = 1; v <= 200; v++) h.record(v);
    expect(h.percentile(50)).toBe(100);
    expect(h.percentile(99)).toBe(198);
    expect(h.percentile(100)).toBe(200);
    expect(h.mean()).toBeCloseTo(100.5, 10);
  });

  it('keeps the exact max and min of fractional values', () => {
    const h = new LatencyHistogram();
    h.record(1234.56);
    h.record(98765.4);
    expect(h.max).toBe(98765.4);
    expect(h.min).toBe(1234.56);
    expect(h.percentile(100)).toBe(98765.4);
  });

  it('merges into the same percentiles as recording everything in one', () => {
    const rng = new SeededRandom(12);
    const values = logNormal(rng, 20_000, 1_500, 1);
    const one = new LatencyHistogram();
    const left = new LatencyHistogram();
    const right = new LatencyHistogram();
    values.forEach((v, i) => {
      one.record(v);
      (i % 2 === 0 ? left : right).record(v);
    });
    left.merge(right);
    expect(left.summary()).toEqual(one.summary());
  });

  it('summarizes an empty histogram as zeros', () => {
    expect(new LatencyHistogram().summary()).toEqual({
      count: 0,
      min: 0,
      mean: 0,
      p50: 0,
      p95: 0,
      p99: 0,
      p999: 0,
      max: 0,
    });
  });

  it('counts negative and huge values at the ends instead of failing', () => {
    const h = new LatencyHistogram();
    h.record(-5);
    h.record(1e12);
    expect(h.count).toBe(2);
    expect(h.percentile(0)).toBe(0);
    expect(h.max).toBe(1e12);
  });
});
