import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhiAccrualDetector, phiOf } from '../../node/src/membership/phi.js';

/** Akka's formula exactly as Akka writes it (two branches, plain log10), as an independent reference. */
function akkaPhi(elapsed: number, mean: number, stdDev: number): number {
  const y = (elapsed - mean) / stdDev;
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
  return elapsed > mean ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e));
}

/** Silence (ms) at which the reference phi reaches target, found by bisection to 1e-6 ms. */
function silenceToReach(target: number, mean: number, stdDev: number): number {
  let lo = mean;
  let hi = mean + 100 * stdDev;
  while (hi - lo > 1e-6) {
    const mid = (lo + hi) / 2;
    if (akkaPhi(mid, mean, stdDev) < target) lo = mid;
    else hi = mid;
  }
  return hi;
}

/** A detector that has seen heartbeats from peer at the given intervals after a first one at 0; returns the last time. */
function feed(detector: PhiAccrualDetector, peer: string, intervals: readonly number[]): number {
  let now = 0;
  detector.heartbeat(peer, now);
  for (const interval of intervals) {
    now += interval;
    detector.heartbeat(peer, now);
  }
  return now;
}

/** First whole ms of silence after last at which phi reaches threshold. */
function msUntilSuspected(detector: PhiAccrualDetector, peer: string, last: number, threshold = 8): number {
  for (let silence = 0; ; silence++) if (detector.phi(peer, last + silence) >= threshold) return silence;
}

const every = (ms: number, count: number): number[] => Array.from({ length: count }, () => ms);

describe('phiOf', () => {
  it('matches Akka’s two-branch formula wherever that one is finite', () => {
    for (let elapsed = 0; elapsed <= 3000; elapsed += 7) {
      expect(phiOf(elapsed, 1000, 250)).toBeCloseTo(akkaPhi(elapsed, 1000, 250), 9);
    }
    expect(phiOf(1000, 1000, 100)).toBeCloseTo(Math.log10(2), 12);
  });

  it('stays finite and keeps growing where the plain formula overflows to Infinity', () => {
    expect(akkaPhi(100_000, 1000, 100)).toBe(Number.POSITIVE_INFINITY);
    const far = phiOf(100_000, 1000, 100);
    expect(Number.isFinite(far)).toBe(true);
    expect(phiOf(200_000, 1000, 100)).toBeGreaterThan(far);
  });
});

describe('PhiAccrualDetector', () => {
  it('reports phi 0 and available for a peer it never heard from', () => {
    const detector = new PhiAccrualDetector();
    expect(detector.phi('a', 1_000_000)).toBe(0);
    expect(detector.isAvailable('a', 1_000_000)).toBe(true);
    expect(detector.stats('a')).toBeUndefined();
    expect(detector.peers()).toEqual([]);
  });

  it('uses the first-heartbeat estimate (mean e, deviation e/4) after a single heartbeat', () => {
    const detector = new PhiAccrualDetector({
      firstHeartbeatEstimateMs: 1000,
      acceptableHeartbeatPauseMs: 0,
    });
    detector.heartbeat('a', 5000);
    expect(detector.stats('a')).toEqual({ samples: 2, meanMs: 1000, stdDevMs: 250, lastHeartbeatMs: 5000 });
    expect(detector.phi('a', 6000)).toBeCloseTo(Math.log10(2), 12);
    expect(detector.phi('a', 6500)).toBeCloseTo(akkaPhi(1500, 1000, 250), 12);
  });

  it('raises phi monotonically with silence, whatever the history', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5000 }), { maxLength: 50 }),
        fc.integer({ min: 0, max: 30_000 }),
        fc.integer({ min: 0, max: 30_000 }),
        (intervals, a, b) => {
          const detector = new PhiAccrualDetector();
          const last = feed(detector, 'p', intervals);
          const [early, late] = a <= b ? [a, b] : [b, a];
          expect(detector.phi('p', last + early)).toBeLessThanOrEqual(detector.phi('p', last + late));
        },
      ),
    );
    const detector = new PhiAccrualDetector();
    const last = feed(detector, 'p', every(1000, 20));
    let previous = -1;
    for (let silence = 0; silence <= 60_000; silence += 10) {
      const phi = detector.phi('p', last + silence);
      expect(phi).toBeGreaterThanOrEqual(previous);
      if (previous > 1e-12) expect(phi).toBeGreaterThan(previous);
      previous = phi;
    }
    expect(previous).toBeGreaterThan(100);
  });

  it('keeps phi < 1 one second after a regular 1 s heartbeat and passes 8 after 1 + 3 + 5.2 * 0.1 s of silence', () => {
    const detector = new PhiAccrualDetector();
    const last = feed(detector, 'p', every(1000, 20));
    // 2 seeds (750, 1250) + 20 intervals of 1000: mean 1000, deviation sqrt(2 * 250² / 22) = 75 < floor 100.
    const stats = detector.stats('p')!;
    expect(stats.samples).toBe(22);
    expect(stats.meanMs).toBe(1000);
    expect(stats.stdDevMs).toBeCloseTo(Math.sqrt((2 * 250 ** 2) / 22), 9);
    const mean = 1000 + 3000;
    expect(detector.phi('p', last + 1000)).toBeCloseTo(akkaPhi(1000, mean, 100), 12);
    expect(detector.phi('p', last + 1000)).toBeLessThan(1);
    const reach8 = silenceToReach(8, mean, 100);
    expect(reach8).toBeCloseTo(4522.6, 1);
    expect(detector.phi('p', last + reach8 - 0.01)).toBeLessThan(8);
    expect(detector.phi('p', last + reach8 + 0.01)).toBeGreaterThan(8);
    expect(detector.isAvailable('p', last + 4522)).toBe(true);
    expect(detector.isAvailable('p', last + 4523)).toBe(false);
    expect(reach8).toBeLessThan(10_000);
  });

  it('with no acceptable pause, is at log10(2) one interval after the last heartbeat and at 8 about 5.2 deviations later', () => {
    const detector = new PhiAccrualDetector({ acceptableHeartbeatPauseMs: 0 });
    const last = feed(detector, 'p', every(1000, 20));
    expect(detector.phi('p', last + 1000)).toBeCloseTo(Math.log10(2), 12);
    expect(msUntilSuspected(detector, 'p', last)).toBe(Math.ceil(silenceToReach(8, 1000, 100)));
    expect(msUntilSuspected(detector, 'p', last)).toBe(1523);
  });

  it('takes longer to suspect a jittery peer than a steady one with the same mean interval', () => {
    const steady = new PhiAccrualDetector();
    const steadyLast = feed(steady, 'p', every(1000, 40));
    const jittery = new PhiAccrualDetector();
    const jitteryLast = feed(
      jittery,
      'p',
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 500 : 1500)),
    );
    const stats = jittery.stats('p')!;
    expect(stats.meanMs).toBe(1000);
    // 2 seeds at ±250 and 40 intervals at ±500 around 1000.
    const stdDev = Math.sqrt((2 * 250 ** 2 + 40 * 500 ** 2) / 42);
    expect(stats.stdDevMs).toBeCloseTo(stdDev, 9);
    const steadyMs = msUntilSuspected(steady, 'p', steadyLast);
    const jitteryMs = msUntilSuspected(jittery, 'p', jitteryLast);
    expect(steadyMs).toBe(Math.ceil(silenceToReach(8, 4000, 100)));
    expect(jitteryMs).toBe(Math.ceil(silenceToReach(8, 4000, stdDev)));
    expect(jitteryMs - steadyMs).toBeGreaterThan(1500);
  });

  it('keeps at most windowSize intervals per peer, and its statistics describe only those', () => {
    const detector = new PhiAccrualDetector({ windowSize: 10, threshold: 1e9 });
    feed(detector, 'p', [...every(100, 100), ...every(1000, 50)]);
    expect(detector.stats('p')).toMatchObject({ samples: 10, meanMs: 1000, stdDevMs: 0 });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 100 }),
        (windowSize, intervals) => {
          const d = new PhiAccrualDetector({ windowSize });
          feed(d, 'p', intervals);
          expect(d.stats('p')!.samples).toBeLessThanOrEqual(windowSize);
        },
      ),
    );
  });

  it('keeps its running mean and deviation exact over many windows of fractional intervals', () => {
    const windowSize = 100;
    const detector = new PhiAccrualDetector({ windowSize, threshold: 1e9 });
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const intervals = Array.from({ length: 10_050 }, () => 800 + random() * 400 + 1e-3);
    feed(detector, 'p', intervals);
    const window = intervals.slice(-windowSize);
    const mean = window.reduce((a, b) => a + b, 0) / windowSize;
    const stdDev = Math.sqrt(window.reduce((a, b) => a + (b - mean) ** 2, 0) / windowSize);
    const stats = detector.stats('p')!;
    expect(stats.meanMs).toBeCloseTo(mean, 8);
    expect(stats.stdDevMs).toBeCloseTo(stdDev, 6);
  });

  it('does not learn from the heartbeat that ends a long pause, so a resumed peer is trusted again at once', () => {
    const detector = new PhiAccrualDetector();
    const last = feed(detector, 'p', every(1000, 30));
    const before = detector.stats('p')!;
    const resumed = last + 60_000;
    expect(detector.phi('p', resumed)).toBeGreaterThan(8);
    detector.heartbeat('p', resumed);
    expect(detector.stats('p')).toEqual({ ...before, lastHeartbeatMs: resumed });
    expect(detector.phi('p', resumed + 1000)).toBeLessThan(1);
    for (let i = 1; i <= 3; i++) detector.heartbeat('p', resumed + i * 1000);
    expect(detector.isAvailable('p', resumed + 4000)).toBe(true);
    expect(detector.phi('p', resumed + 4000)).toBeLessThan(1);
    expect(detector.stats('p')!.meanMs).toBe(1000);
  });

  it('ignores a heartbeat older than the last one', () => {
    const detector = new PhiAccrualDetector();
    const last = feed(detector, 'p', every(1000, 5));
    const before = detector.stats('p');
    detector.heartbeat('p', last - 500);
    expect(detector.stats('p')).toEqual(before);
  });

  it('judges availability against the given threshold, or the configured one by default', () => {
    const detector = new PhiAccrualDetector({ threshold: 3, acceptableHeartbeatPauseMs: 0 });
    const last = feed(detector, 'p', every(1000, 20));
    const at = last + 1350;
    const phi = detector.phi('p', at);
    expect(phi).toBeGreaterThan(3);
    expect(phi).toBeLessThan(8);
    expect(detector.isAvailable('p', at)).toBe(false);
    expect(detector.isAvailable('p', at, 8)).toBe(true);
  });

  it('lists peers sorted and forgets a removed one', () => {
    const detector = new PhiAccrualDetector();
    for (const peer of ['c', 'a', 'b']) detector.heartbeat(peer, 0);
    expect(detector.peers()).toEqual(['a', 'b', 'c']);
    detector.remove('b');
    expect(detector.peers()).toEqual(['a', 'c']);
    expect(detector.phi('b', 100_000)).toBe(0);
    expect(detector.stats('b')).toBeUndefined();
  });

  it('rejects options that make no sense', () => {
    expect(() => new PhiAccrualDetector({ windowSize: 0 })).toThrow(/windowSize/);
    expect(() => new PhiAccrualDetector({ windowSize: 1.5 })).toThrow(/windowSize/);
    expect(() => new PhiAccrualDetector({ minStdDevMs: 0 })).toThrow(/minStdDevMs/);
    expect(() => new PhiAccrualDetector({ acceptableHeartbeatPauseMs: -1 })).toThrow(
      /acceptableHeartbeatPauseMs/,
    );
    expect(() => new PhiAccrualDetector({ firstHeartbeatEstimateMs: Number.NaN })).toThrow(/firstHeartbeat/);
    expect(() => new PhiAccrualDetector({ threshold: 0 })).toThrow(/threshold/);
  });
});
