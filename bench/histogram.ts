/**
 * A latency histogram with log-linear buckets in the style of HdrHistogram: values below 256 are counted
 * exactly, above that each power of two is split into 128 equal buckets, so any recorded value is known to
 * within 1/128 (< 0.8%) and percentiles are reported at the bucket midpoint (< 0.4% off). Values are
 * integers (the benchmark records microseconds); the exact min, max and sum are kept beside the buckets.
 */

const SUB_BUCKET_BITS = 7;
const SUB_BUCKET_HALF = 1 << SUB_BUCKET_BITS; // 128 buckets per power of two
const LINEAR_LIMIT = SUB_BUCKET_HALF * 2; // values below this have a bucket each
/** Largest value told apart; larger ones are counted in the top bucket (≈ 71 minutes in microseconds). */
export const HISTOGRAM_MAX_VALUE = 2 ** 32 - 1;
const BUCKET_COUNT = LINEAR_LIMIT + (31 - SUB_BUCKET_BITS) * SUB_BUCKET_HALF;

/** The bucket a non-negative integer value falls in. */
export function bucketIndex(value: number): number {
  if (value < LINEAR_LIMIT) return value;
  const shift = 31 - Math.clz32(value) - SUB_BUCKET_BITS;
  return LINEAR_LIMIT + (shift - 1) * SUB_BUCKET_HALF + ((value >>> shift) - SUB_BUCKET_HALF);
}

/** The lowest value and width of a bucket. */
export function bucketRange(index: number): { low: number; width: number } {
  if (index < LINEAR_LIMIT) return { low: index, width: 1 };
  const offset = index - LINEAR_LIMIT;
  const width = 2 ** (Math.floor(offset / SUB_BUCKET_HALF) + 1);
  return { low: ((offset % SUB_BUCKET_HALF) + SUB_BUCKET_HALF) * width, width };
}

/** Count, mean and the percentiles the benchmark reports, in the recorded unit. */
export interface HistogramSummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKET_COUNT);
  private total = 0;
  private sum = 0;
  private minValue = Number.POSITIVE_INFINITY;
  private maxValue = 0;

  /** Number of recorded values. */
  get count(): number {
    return this.total;
  }

  /** Smallest recorded value (0 when empty). */
  get min(): number {
    return this.total === 0 ? 0 : this.minValue;
  }

  /** Largest recorded value (0 when empty). */
  get max(): number {
    return this.maxValue;
  }

  /** Records one value; negatives count as 0, fractions are rounded for bucketing. */
  record(value: number): void {
    const v = Number.isFinite(value) ? Math.max(0, value) : HISTOGRAM_MAX_VALUE;
    this.counts[bucketIndex(Math.min(Math.round(v), HISTOGRAM_MAX_VALUE))]! += 1;
    this.total += 1;
    this.sum += v;
    if (v < this.minValue) this.minValue = v;
    if (v > this.maxValue) this.maxValue = v;
  }

  /** Adds every value recorded in `other` to this histogram. */
  merge(other: LatencyHistogram): void {
    if (other.total === 0) return;
    for (let i = 0; i < BUCKET_COUNT; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
    this.sum += other.sum;
    this.minValue = Math.min(this.minValue, other.minValue);
    this.maxValue = Math.max(this.maxValue, other.maxValue);
  }

  /** Mean of the recorded values (0 when empty). */
  mean(): number {
    return this.total === 0 ? 0 : this.sum / this.total;
  }

  /** The value at percentile p (0..100), nearest-rank, at bucket precision; 0 when empty. */
  percentile(p: number): number {
    if (this.total === 0) return 0;
    if (p <= 0) return this.minValue;
    if (p >= 100) return this.maxValue;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const { low, width } = bucketRange(i);
        const mid = low + (width - 1) / 2;
        return Math.min(this.maxValue, Math.max(this.minValue, mid));
      }
    }
    return this.maxValue;
  }

  /** The summary the benchmark prints and saves. */
  summary(): HistogramSummary {
    return {
      count: this.total,
      min: this.min,
      mean: this.mean(),
      p50: this.percentile(50),
      p95: this.percentile(95),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      max: this.max,
    };
  }
}
