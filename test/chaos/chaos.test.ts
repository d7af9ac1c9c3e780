/**
 * The bounded part of the Jepsen-style suite that runs in npm test: a few seeded fault schedules, each
 * over every kind of fault, on 5 real node processes in network namespaces (and a spare that joins and
 * is decommissioned); and the checker's self-check, a last-writer-wins bucket where concurrent
 * read-modify-writes must lose adds, and where deletes that did not cover their value are counted as
 * acknowledged, so their surviving values must be reported as resurrected. `npm run chaos` runs more.
 */
import { describe, expect, it } from 'vitest';
import { ensureTools } from '../support/system-tools.js';
import { failures, runSchedule, table } from './runner.js';
import type { FaultKind } from './schedule.js';

// Between them, every kind of fault once per run, in an order (and on nodes) drawn from the seed.
const GROUPS: Array<{ seed: number; kinds: FaultKind[] }> = [
  { seed: 101, kinds: ['partition-halves', 'partition-ring', 'partition-bridge', 'partition-isolate'] },
  { seed: 202, kinds: ['kill-seeds', 'kill-busiest', 'kill-two', 'pause'] },
  { seed: 303, kinds: ['wipe', 'skew', 'kill-one'] },
  { seed: 505, kinds: ['remove-restart', 'join-decommission', 'address-change'] },
];

describe('chaos: seeded fault schedules against 5 nodes in network namespaces', () => {
  for (const { seed, kinds } of GROUPS) {
    it(`seed ${seed} (${kinds.join(', ')}): no acknowledged write is lost, no acknowledged delete comes back`, async () => {
      ensureTools(['ip', 'faketime'], 'install-test-tools.sh');
      const r = await runSchedule({
        seed,
        mode: 'siblings',
        faults: 0,
        kinds,
        everyKind: true,
        log: console.log,
      });
      console.log(table([r]));
      expect(failures(r), r.check.examples.join('\n')).toEqual([]);
      expect(r.ackedAdds).toBeGreaterThan(100);
      expect(r.ackedBlind).toBeGreaterThan(50);
      expect(r.ackedDeletes).toBeGreaterThan(20);
      expect(r.uncoveredDeletes).toBeGreaterThan(0);
      expect(r.faults.map((f) => f.kind).sort()).toEqual([...kinds].sort());
    }, 300_000);
  }

  it('the checker sees loss and resurrection: lww loses concurrent adds, uncovered deletes counted come back', async () => {
    ensureTools(['ip', 'faketime'], 'install-test-tools.sh');
    const r = await runSchedule({
      seed: 404,
      mode: 'lww',
      faults: 1,
      kinds: ['partition-halves'],
      log: console.log,
    });
    console.log(table([r]));
    expect(r.check.lostAdds).toBeGreaterThan(0);
    // Each delete sent without a covering context was (wrongly, on purpose) counted as acknowledged:
    // its value survives, as it must, and the same check that guards real deletes reports it.
    expect(r.uncoveredDeletes).toBeGreaterThan(0);
    expect(r.check.resurrected).toBeGreaterThanOrEqual(r.uncoveredDeletes);
    expect(failures(r)).toEqual([]);
  }, 240_000);
});
