/**
 * npm run chaos -- [--schedules N] [--seed S] [--faults F] [--kinds a,b] [--lww] [--tls]
 * Runs N seeded schedules (seeds S, S+1, ...) in siblings mode, then one in a last-writer-wins bucket
 * that must show lost adds and resurrected deletes (the checker proving it can see both), and prints a
 * table, and per fault kind the time the cluster took to converge after it. Exits 1 when any schedule
 * broke a promise; each failing one prints the command that replays it.
 */
import { parseArgs } from 'node:util';
import { ensureTools } from '../support/system-tools.js';
import { snapshotBuild } from './netns.js';
import { convergenceTable, failures, type RunResult, runSchedule, table } from './runner.js';
import { FAULT_KINDS, type FaultKind } from './schedule.js';

const { values } = parseArgs({
  options: {
    schedules: { type: 'string', default: '10' },
    seed: { type: 'string', default: String(Date.now() % 100_000) },
    faults: { type: 'string', default: '4' },
    kinds: { type: 'string' },
    lww: { type: 'boolean', default: false },
    tls: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`npm run chaos -- [--schedules N] [--seed S] [--faults F] [--kinds a,b] [--lww]
  --schedules N  seeded schedules to run in siblings mode (default 10), then one lww self-check
  --seed S       first seed (default: from the clock); a failing schedule prints its replay command
  --faults F     faults per schedule (default 4)
  --kinds a,b    only these fault kinds: ${FAULT_KINDS.join(', ')}
  --lww          every schedule on a last-writer-wins bucket (which must lose adds)
  --tls          mutual TLS between the nodes (certificates of a CA made for the run; signed gossip)`);
  process.exit(0);
}
const count = Number(values.schedules);
const first = Number(values.seed);
const faults = Number(values.faults);
const kinds = values.kinds?.split(',') as FaultKind[] | undefined;
for (const k of kinds ?? [])
  if (!FAULT_KINDS.includes(k)) throw new Error(`unknown fault kind ${k}: ${FAULT_KINDS.join(', ')}`);
if (!Number.isSafeInteger(count) || count < 1) throw new Error('--schedules must be a positive integer');
ensureTools(['ip', 'faketime'], 'install-test-tools.sh');
// The build npm run chaos just made, copied: rebuilding meanwhile does not change the nodes of this run.
process.once('exit', snapshotBuild());

const results: RunResult[] = [];
let failed = 0;
const plan: Array<{ seed: number; mode: 'siblings' | 'lww' }> = values.lww
  ? Array.from({ length: count }, (_, i) => ({ seed: first + i, mode: 'lww' as const }))
  : [
      ...Array.from({ length: count }, (_, i) => ({ seed: first + i, mode: 'siblings' as const })),
      { seed: first, mode: 'lww' as const },
    ];
for (const { seed, mode } of plan) {
  const r = await runSchedule({
    seed,
    mode,
    faults,
    ...(kinds ? { kinds } : {}),
    ...(values.tls ? { tls: true } : {}),
    log: (l) => console.log(l),
  });
  results.push(r);
  const bad = failures(r);
  if (bad.length > 0) {
    failed++;
    console.log(`  FAILED: ${bad.join('; ')}`);
    for (const e of r.check.examples) console.log(`    ${e}`);
  }
}
console.log(`\n${table(results)}\n`);
const siblings = results.filter((r) => r.mode === 'siblings');
console.log(
  `convergence after each fault, from the start of its undo until every member is ready with no hint pending (timeout 30 s after the undo), siblings mode:\n${convergenceTable(siblings)}\n`,
);
const sum = (f: (r: RunResult) => number) => siblings.reduce((n, r) => n + f(r), 0);
console.log(
  `siblings mode: ${siblings.length} schedules, ${sum((r) => r.ackedAdds)} adds, ${sum((r) => r.ackedBlind)} blind writes and ` +
    `${sum((r) => r.ackedDeletes)} covering deletes acknowledged (besides ${sum((r) => r.uncoveredDeletes)} deletes without a context, ` +
    `whose values must survive, and ${sum((r) => r.unknownDeletes)} with a context not known to cover the value, unchecked); ` +
    `${sum((r) => r.check.lostAdds)} adds, ${sum((r) => r.check.lostBlind)} blind writes and ${sum((r) => r.check.lostKept)} kept values lost, ` +
    `${sum((r) => r.check.resurrected)} deletes resurrected; ` +
    `max final convergence ${(Math.max(0, ...siblings.map((r) => r.convergeMs)) / 1000).toFixed(1)} s`,
);
const byKind: Record<string, number> = {};
for (const r of siblings)
  for (const [k, n] of Object.entries(r.faultsByKind)) byKind[k] = (byKind[k] ?? 0) + n;
console.log(
  `faults by kind: ${Object.entries(byKind)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ')}`,
);
const during = siblings.reduce(
  (a, r) => [a[0]! + r.duringFaults.acknowledged, a[1]! + r.duringFaults.attempted],
  [0, 0],
);
console.log(
  `availability while a fault was held: ${((100 * during[0]!) / Math.max(1, during[1]!)).toFixed(1)}% of ${during[1]} operations acknowledged`,
);
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
