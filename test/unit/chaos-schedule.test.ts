import { describe, expect, it } from 'vitest';
import { Prng } from '../chaos/prng.js';
import { FAULT_KINDS, generateSchedule } from '../chaos/schedule.js';

describe('chaos schedules', () => {
  it('are the same for the same seed and differ between seeds', () => {
    const a = generateSchedule(7, { nodes: 5, faults: 6 });
    expect(generateSchedule(7, { nodes: 5, faults: 6 })).toEqual(a);
    expect(generateSchedule(8, { nodes: 5, faults: 6 })).not.toEqual(a);
    expect(new Prng(1).next()).toBe(new Prng(1).next());
  });

  it('with everyKind, hold each kind once, on valid nodes', () => {
    for (let seed = 0; seed < 20; seed++) {
      const s = generateSchedule(seed, { nodes: 5, faults: 0, everyKind: true });
      expect(s.map((f) => f.kind).sort()).toEqual([...FAULT_KINDS].sort());
      for (const f of s) {
        // join-decommission acts on the spare, index 5 (n6); every other kind on the 5 members.
        const spare = f.kind === 'join-decommission';
        for (const i of [...f.nodes, ...f.others]) expect(i >= 0 && i < (spare ? 6 : 5)).toBe(true);
        if (spare) expect(f.nodes).toEqual([5]);
        // Never a seed: the others reach the cluster through n1 and n2.
        if (f.kind === 'remove-restart' || f.kind === 'address-change') {
          expect(f.nodes).toHaveLength(1);
          expect(f.nodes[0]).toBeGreaterThanOrEqual(2);
        }
        if (f.kind === 'kill-seeds') expect(f.nodes).toEqual([0, 1]);
        if (f.kind.startsWith('partition-') && f.kind !== 'partition-ring') {
          expect(f.nodes.length).toBeGreaterThan(0);
          expect(f.others.length).toBeGreaterThan(0);
        }
        if (f.kind === 'pause') expect(f.holdMs).toBeGreaterThanOrEqual(8000);
        if (f.kind === 'skew') expect(f.skewSeconds).toBeGreaterThanOrEqual(60);
      }
    }
  });
});
