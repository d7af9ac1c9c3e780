/**
 * The phi-accrual failure detector (Hayashibara et al. 2004), in Akka's practical form: instead of a
 * yes/no verdict it reports phi = -log10(P(a heartbeat arrives later than now)), estimated from a
 * bounded window of recent heartbeat inter-arrival times. phi = 1 means ~10% odds the peer is alive,
 * phi = 8 about 1 in 10^8. Pure and synchronous: the caller feeds it timestamps (use a monotonic clock,
 * e.g. performance.now()), so a timer and a transport can drive it and tests can use plain numbers.
 */

export interface PhiAccrualOptions {
  /** Heartbeat intervals kept per peer (the oldest are dropped); default 1000, as Akka and Cassandra. */
  windowSize?: number;
  /**
   * Floor of the standard deviation, in ms; default 100, as Akka. Perfectly regular heartbeats give a
   * deviation near 0, which would turn phi into a step function (a heartbeat 20 ms late is a failure);
   * 100 ms (10% of a 1 s heartbeat) keeps the curve smooth at the scale of a GC or event-loop hiccup.
   */
  minStdDevMs?: number;
  /**
   * Extra silence tolerated before phi starts to climb, added to the mean interval; default 3000, as Akka
   * cluster. It absorbs pauses the history cannot predict (GC, an event-loop stall, a slow gossip path)
   * and dominates detection time: with 1 s heartbeats phi reaches 8 after about 1 + 3 + 5.2 * 0.1 = 4.5 s.
   */
  acceptableHeartbeatPauseMs?: number;
  /** Expected interval before any has been measured, in ms; default 1000 (the gossip interval). */
  firstHeartbeatEstimateMs?: number;
  /** Default threshold of isAvailable, and the one above which a late heartbeat is not sampled; default 8. */
  threshold?: number;
}

/** Summary of a peer's heartbeat history, for debugging and metrics. */
export interface HeartbeatStats {
  /** Intervals in the window (never more than windowSize). */
  samples: number;
  meanMs: number;
  stdDevMs: number;
  lastHeartbeatMs: number;
}

/**
 * phi for a heartbeat silence of elapsedMs when intervals are ~ Normal(meanMs, stdDevMs).
 * Uses Akka's logistic approximation of the normal CDF, 1 - F(y) ~ 1 / (1 + e^z) with
 * z = y (1.5976 + 0.070566 y^2), y = (elapsed - mean) / stdDev (max error ~1.4e-4, no erf needed).
 * We take the normal model rather than Cassandra's exponential one (phi = 0.434 t / mean) because it
 * accounts for the spread of the intervals: a jittery peer earns more patience, a steady one less.
 * phi = log10(1 + e^z), computed as a stable softplus so it stays finite (no log10(0) = Infinity)
 * and strictly increasing in elapsedMs, however long the silence.
 */
export function phiOf(elapsedMs: number, meanMs: number, stdDevMs: number): number {
  const y = (elapsedMs - meanMs) / stdDevMs;
  const z = y * (1.5976 + 0.070566 * y * y);
  const softplus = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
  return softplus / Math.LN10;
}

/** One peer's bounded window of intervals, with running sums so each heartbeat costs O(1). */
class IntervalWindow {
  private readonly values: Float64Array;
  private next = 0;
  private count = 0;
  private sum = 0;
  private sumOfSquares = 0;

  constructor(capacity: number) {
    this.values = new Float64Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  add(interval: number): void {
    const capacity = this.values.length;
    if (this.count === capacity) {
      const dropped = this.values[this.next] as number;
      this.sum -= dropped;
      this.sumOfSquares -= dropped * dropped;
    } else this.count++;
    this.values[this.next] = interval;
    this.sum += interval;
    this.sumOfSquares += interval * interval;
    this.next = (this.next + 1) % capacity;
    // Subtracting dropped samples lets rounding error creep in with fractional intervals; resumming
    // once per lap of the window costs O(1) amortized and keeps the sums exact enough forever.
    if (this.next === 0) this.resum();
  }

  get mean(): number {
    return this.sum / this.count;
  }

  get stdDev(): number {
    const mean = this.mean;
    // Clamped: cancellation can leave a tiny negative variance when all samples are equal.
    return Math.sqrt(Math.max(0, this.sumOfSquares / this.count - mean * mean));
  }

  private resum(): void {
    let sum = 0;
    let sumOfSquares = 0;
    for (let i = 0; i < this.count; i++) {
      const v = this.values[i] as number;
      sum += v;
      sumOfSquares += v * v;
    }
    this.sum = sum;
    this.sumOfSquares = sumOfSquares;
  }
}

interface PeerHistory {
  intervals: IntervalWindow;
  lastHeartbeatMs: number;
}

function checkOption(name: string, value: number, ok: boolean): number {
  if (!Number.isFinite(value) || !ok) throw new RangeError(`phi detector: invalid ${name}: ${value}`);
  return value;
}

/** Per-peer phi-accrual failure detection from heartbeat arrival times. */
export class PhiAccrualDetector {
  readonly windowSize: number;
  readonly minStdDevMs: number;
  readonly acceptableHeartbeatPauseMs: number;
  readonly firstHeartbeatEstimateMs: number;
  readonly threshold: number;
  private readonly histories = new Map<string, PeerHistory>();

  /** Throws RangeError on a non-positive window, deviation floor, estimate or threshold, or a negative pause. */
  constructor(opts: PhiAccrualOptions = {}) {
    const windowSize = opts.windowSize ?? 1000;
    this.windowSize = checkOption('windowSize', windowSize, Number.isInteger(windowSize) && windowSize >= 1);
    const minStdDev = opts.minStdDevMs ?? 100;
    this.minStdDevMs = checkOption('minStdDevMs', minStdDev, minStdDev > 0);
    const pause = opts.acceptableHeartbeatPauseMs ?? 3000;
    this.acceptableHeartbeatPauseMs = checkOption('acceptableHeartbeatPauseMs', pause, pause >= 0);
    const first = opts.firstHeartbeatEstimateMs ?? 1000;
    this.firstHeartbeatEstimateMs = checkOption('firstHeartbeatEstimateMs', first, first > 0);
    const threshold = opts.threshold ?? 8;
    this.threshold = checkOption('threshold', threshold, threshold > 0);
  }

  /** Records a heartbeat from peer at nowMs; a timestamp older than the last one is ignored. */
  heartbeat(peer: string, nowMs: number): void {
    const history = this.histories.get(peer);
    if (history === undefined) {
      // As Akka: seed the window with two intervals of mean estimate and deviation estimate/4, a
      // prior that the real intervals dilute and, after windowSize heartbeats, push out entirely.
      const intervals = new IntervalWindow(this.windowSize);
      const estimate = this.firstHeartbeatEstimateMs;
      if (this.windowSize === 1) intervals.add(estimate);
      else {
        intervals.add(estimate - estimate / 4);
        intervals.add(estimate + estimate / 4);
      }
      this.histories.set(peer, { intervals, lastHeartbeatMs: nowMs });
      return;
    }
    if (nowMs < history.lastHeartbeatMs) return;
    // As Akka: the first heartbeat after the peer was judged failed is not sampled, so a long pause
    // (a partition, a restart) does not inflate mean and deviation and slow the next detection.
    if (this.phi(peer, nowMs) < this.threshold) history.intervals.add(nowMs - history.lastHeartbeatMs);
    history.lastHeartbeatMs = nowMs;
  }

  /** Suspicion level of peer at nowMs: 0 for a peer never heard from, then rising with silence. */
  phi(peer: string, nowMs: number): number {
    const history = this.histories.get(peer);
    if (history === undefined) return 0;
    const { intervals } = history;
    const elapsed = Math.max(0, nowMs - history.lastHeartbeatMs);
    const mean = intervals.mean + this.acceptableHeartbeatPauseMs;
    return phiOf(elapsed, mean, Math.max(intervals.stdDev, this.minStdDevMs));
  }

  /** True while phi(peer, nowMs) is below threshold (a peer never heard from counts as available). */
  isAvailable(peer: string, nowMs: number, threshold = this.threshold): boolean {
    return this.phi(peer, nowMs) < threshold;
  }

  /** The peer's window summary, or undefined for a peer never heard from. */
  stats(peer: string): HeartbeatStats | undefined {
    const history = this.histories.get(peer);
    if (history === undefined) return undefined;
    const { intervals } = history;
    return {
      samples: intervals.size,
      meanMs: intervals.mean,
      stdDevMs: intervals.stdDev,
      lastHeartbeatMs: history.lastHeartbeatMs,
    };
  }

  /** Forgets peer (e.g. once it is removed from the cluster); its phi is 0 again. */
  remove(peer: string): void {
    this.histories.delete(peer);
  }

  /** Peers with a heartbeat history, sorted. */
  peers(): string[] {
    return [...this.histories.keys()].sort();
  }
}
