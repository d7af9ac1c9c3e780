/**
 * Runs one seeded fault schedule against 5 real node processes in network namespaces under the set
 * workload, heals everything, waits for convergence and checks every acknowledged write.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type CheckResult, check } from './checker.js';
import { NetnsCluster } from './netns.js';
import { Prng } from './prng.js';
import { describeSchedule, type Fault, type FaultKind, generateSchedule } from './schedule.js';
import { HOT_BUCKET, type OpStats, SetWorkload } from './workload.js';

export interface RunOptions {
  seed: number;
  /** 'lww' runs the hot keys in a last-writer-wins bucket, where concurrent adds must get lost. */
  mode: 'siblings' | 'lww';
  faults: number;
  kinds?: readonly FaultKind[];
  /** Each of kinds exactly once (faults is ignored). */
  everyKind?: boolean;
  nodes?: number;
  maxHoldMs?: number;
  convergeTimeoutMs?: number;
  /** Extra flags for every node. */
  args?: string[];
  log?: (line: string) => void;
}

export interface RunResult {
  seed: number;
  mode: 'siblings' | 'lww';
  schedule: string;
  faultsByKind: Partial<Record<FaultKind, number>>;
  adds: OpStats;
  blinds: OpStats;
  duringFaults: OpStats;
  ackedAdds: number;
  ackedBlind: number;
  check: CheckResult;
  /** From the heal until every acknowledged write was found (or the timeout). */
  convergeMs: number;
  converged: boolean;
  crashes: string[];
  /** Faults that could not be applied or undone (a restart that failed, ...). */
  errors: string[];
}

const NODE_FLAGS = [
  ...['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'],
  ...['--request-timeout-ms', '2000', '--anti-entropy-interval-ms', '1000'],
];

/** Undoes a fault. */
type Undo = () => Promise<void>;

async function apply(c: NetnsCluster, f: Fault, w: SetWorkload): Promise<Undo> {
  const heal = async () => c.heal();
  const restart = (nodes: number[]) => async () => {
    await Promise.all(nodes.map((i) => c.startNode(i)));
  };
  switch (f.kind) {
    case 'partition-halves':
    case 'partition-isolate':
      c.partition(f.nodes, f.others);
      return heal;
    case 'partition-ring': {
      const n = f.nodes.length;
      const pairs: Array<[number, number]> = [];
      for (let a = 0; a < n; a++)
        for (let b = a + 1; b < n; b++)
          if (b - a !== 1 && b - a !== n - 1) pairs.push([f.nodes[a]!, f.nodes[b]!]);
      c.cut(pairs);
      return heal;
    }
    case 'partition-bridge':
      c.partition(f.nodes.slice(1), f.others);
      return heal;
    case 'kill-one':
    case 'kill-two':
    case 'kill-seeds':
      await Promise.all(f.nodes.map((i) => c.kill(i)));
      return restart(f.nodes);
    case 'kill-busiest': {
      const i = w.busiest();
      f.nodes = [i];
      await c.kill(i);
      return restart([i]);
    }
    case 'pause':
      c.pause(f.nodes[0]!);
      return async () => c.resume(f.nodes[0]!);
    case 'wipe':
      await c.wipe(f.nodes[0]!);
      return restart(f.nodes);
    case 'skew': {
      const i = f.nodes[0]!;
      await c.kill(i);
      await c.startNode(i, { skewSeconds: f.skewSeconds });
      return async () => {
        await c.kill(i);
        await c.startNode(i);
      };
    }
  }
}

export async function runSchedule(opts: RunOptions): Promise<RunResult> {
  const log = opts.log ?? (() => undefined);
  const nodes = opts.nodes ?? 5;
  const faults = generateSchedule(opts.seed, {
    nodes,
    faults: opts.faults,
    ...(opts.kinds ? { kinds: opts.kinds } : {}),
    ...(opts.everyKind ? { everyKind: true } : {}),
    maxHoldMs: opts.maxHoldMs ?? 5000,
  });
  const schedule = describeSchedule(faults);
  log(`seed ${opts.seed} (${opts.mode}): ${schedule}`);
  const errors: string[] = [];
  const c = await NetnsCluster.start(nodes, [...NODE_FLAGS, ...(opts.args ?? [])]);
  try {
    if (opts.mode === 'lww') {
      const res = await fetch(`${c.url(0)}/buckets/${HOT_BUCKET}/props`, {
        method: 'PUT',
        body: JSON.stringify({ conflict: 'lww' }),
      });
      if (!res.ok) throw new Error(`setting lww props: ${res.status} ${await res.text()}`);
    }
    const urls = c.nodes.map((n) => n.url);
    const w = new SetWorkload(urls, new Prng(opts.seed ^ 0x5eed), {
      clients: 6,
      hotKeys: 3,
      blindShare: 0.3,
      strictShare: 0.2,
      timeoutMs: 5000,
    });
    w.start();
    await sleep(1500);
    for (const f of faults) {
      let undo: Undo | undefined;
      try {
        w.faultActive = true;
        undo = await apply(c, f, w);
        await sleep(f.holdMs);
      } catch (err) {
        errors.push(`${f.kind}: ${(err as Error).message.slice(0, 200)}`);
      }
      try {
        await undo?.();
      } catch (err) {
        errors.push(`undo ${f.kind}: ${(err as Error).message.slice(0, 200)}`);
      }
      w.faultActive = false;
      await sleep(f.gapMs);
    }
    await sleep(1000);
    await w.stop();
    // Heal whatever is left: routes, paused and stopped nodes.
    c.heal();
    for (let i = 0; i < nodes; i++) c.resume(i);
    for (let i = 0; i < nodes; i++) {
      if (c.running(i)) continue;
      try {
        await c.startNode(i);
      } catch (err) {
        errors.push(`final restart of n${i + 1}: ${(err as Error).message.slice(0, 200)}`);
      }
    }
    const healed = Date.now();
    // In lww mode losses are expected and never heal: a short wait for hints is enough.
    const deadline = healed + (opts.convergeTimeoutMs ?? (opts.mode === 'lww' ? 5000 : 60_000));
    let result = await check(urls, w);
    while (result.lostAdds + result.lostBlind + result.readErrors > 0 && Date.now() < deadline) {
      await sleep(1000);
      result = await check(urls, w);
    }
    const converged = result.lostAdds + result.lostBlind + result.readErrors === 0;
    const faultsByKind: Partial<Record<FaultKind, number>> = {};
    for (const f of faults) faultsByKind[f.kind] = (faultsByKind[f.kind] ?? 0) + 1;
    return {
      seed: opts.seed,
      mode: opts.mode,
      schedule,
      faultsByKind,
      adds: w.adds,
      blinds: w.blinds,
      duringFaults: w.duringFaults,
      ackedAdds: [...w.acked.values()].reduce((n, s) => n + s.size, 0),
      ackedBlind: w.blind.size,
      check: result,
      convergeMs: Date.now() - healed,
      converged,
      crashes: c.nodes.flatMap((n) => n.crashes.map((x) => `${n.id}: ${x}`)),
      errors,
    };
  } finally {
    await c.stop();
  }
}

/** A result's failures: empty when it kept every promise (for lww: when the checker saw losses). */
export function failures(r: RunResult): string[] {
  const out: string[] = [];
  if (r.mode === 'lww') {
    if (r.check.lostAdds === 0) out.push('lww: the checker saw no lost add (it must: concurrent adds race)');
  } else if (r.check.lostAdds > 0) out.push(`${r.check.lostAdds} acknowledged adds lost`);
  // Blind writes go to a siblings bucket in both modes.
  if (r.check.lostBlind > 0) out.push(`${r.check.lostBlind} acknowledged blind writes lost`);
  if (r.check.unexpected > 0) out.push(`${r.check.unexpected} unexpected elements`);
  if (r.check.readErrors > 0) out.push(`${r.check.readErrors} reads failed after the heal`);
  if (r.crashes.length > 0) out.push(`crashes: ${r.crashes.join(', ')}`);
  const serverErrors = r.adds.serverErrors + r.blinds.serverErrors;
  if (serverErrors > 0) out.push(`${serverErrors} 5xx answers other than 503`);
  if (r.errors.length > 0) out.push(`faults not applied: ${r.errors.join('; ')}`);
  if (out.length > 0)
    out.push(`replay: npm run chaos -- --seed ${r.seed} --schedules 1${r.mode === 'lww' ? ' --lww' : ''}`);
  return out;
}

const pct = (s: OpStats) =>
  s.attempted === 0 ? '-' : `${((100 * s.acknowledged) / s.attempted).toFixed(0)}%`;

/** A table of results, one row per schedule, and a totals row. */
export function table(results: RunResult[]): string {
  const head =
    '| seed | mode | faults | adds acked | adds lost | blind acked | blind lost | avail. in faults | converge s | siblings left | crashes | 5xx≠503 |';
  const rows = results.map((r) =>
    [
      r.seed,
      r.mode,
      Object.entries(r.faultsByKind)
        .map(([k, n]) => `${k}${n > 1 ? `×${n}` : ''}`)
        .join(' '),
      r.ackedAdds,
      r.check.lostAdds,
      r.ackedBlind,
      r.check.lostBlind,
      pct(r.duringFaults),
      (r.convergeMs / 1000).toFixed(1) + (r.converged ? '' : ' (timeout)'),
      r.check.siblingsLeft,
      r.crashes.length,
      r.adds.serverErrors + r.blinds.serverErrors,
    ].join(' | '),
  );
  return [head, `|${' --- |'.repeat(12)}`, ...rows.map((r) => `| ${r} |`)].join('\n');
}
