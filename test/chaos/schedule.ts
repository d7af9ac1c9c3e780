/**
 * Random fault schedules, drawn from a seeded PRNG: a sequence of faults, each held for a while and then
 * undone, with quiet gaps between them. The same seed always gives the same schedule.
 */
import { Prng } from './prng.js';

export const FAULT_KINDS = [
  'partition-halves',
  'partition-isolate',
  'partition-ring',
  'partition-bridge',
  'kill-one',
  'kill-two',
  'kill-seeds',
  'kill-busiest',
  'pause',
  'wipe',
  'skew',
  'remove-restart',
  'join-decommission',
  'address-change',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Fault {
  kind: FaultKind;
  /**
   * Node indices the fault applies to (a partition's first group, the nodes killed, paused, ...). For
   * join-decommission: the spare node, index `nodes` (one past the members the cluster starts with).
   * remove-restart and address-change never pick n1 or n2, the seeds, so the seeds stay reachable.
   */
  nodes: number[];
  /** For partitions: the second group (halves, isolate, bridge) or unused (ring). */
  others: number[];
  /** How long the fault is held, ms. */
  holdMs: number;
  /** Quiet time after it is undone, ms. */
  gapMs: number;
  /** skew: seconds the node's clock is set back. */
  skewSeconds: number;
}

export interface ScheduleOptions {
  /** Members the cluster starts with (join-decommission adds one more, index nodes). */
  nodes: number;
  faults: number;
  /** Kinds to draw from (default: all). */
  kinds?: readonly FaultKind[];
  /** Each kind exactly once, in an order drawn from the seed (faults is then the number of kinds). */
  everyKind?: boolean;
  /** Longest hold of a fault, ms (pauses are held at least minPauseMs, beyond failure detection). */
  maxHoldMs?: number;
  minPauseMs?: number;
}

export function generateSchedule(seed: number, opts: ScheduleOptions): Fault[] {
  const rng = new Prng(seed);
  const all = Array.from({ length: opts.nodes }, (_, i) => i);
  const kinds = opts.kinds ?? FAULT_KINDS;
  const maxHold = opts.maxHoldMs ?? 5000;
  const faults: Fault[] = [];
  const order = opts.everyKind ? rng.shuffle(kinds) : undefined;
  const count = order ? order.length : opts.faults;
  for (let f = 0; f < count; f++) {
    const kind = order ? order[f]! : rng.pick(kinds);
    const nodes = rng.shuffle(all);
    const fault: Fault = {
      kind,
      nodes: [],
      others: [],
      holdMs: rng.int(Math.min(2000, maxHold), maxHold),
      gapMs: rng.int(500, 1500),
      skewSeconds: 0,
    };
    switch (kind) {
      case 'partition-halves': {
        const cut = rng.int(1, opts.nodes - 1);
        fault.nodes = nodes.slice(0, cut);
        fault.others = nodes.slice(cut);
        break;
      }
      case 'partition-isolate':
        fault.nodes = nodes.slice(0, 1);
        fault.others = nodes.slice(1);
        break;
      case 'partition-ring':
        fault.nodes = nodes; // each node reaches only its two neighbours in this order
        break;
      case 'partition-bridge': {
        // nodes[0] is the bridge: it reaches both sides, which cannot reach each other.
        const half = Math.floor((opts.nodes - 1) / 2);
        fault.nodes = [nodes[0]!, ...nodes.slice(1, 1 + half)];
        fault.others = nodes.slice(1 + half);
        break;
      }
      case 'kill-one':
      case 'wipe':
      case 'skew':
        fault.nodes = nodes.slice(0, 1);
        break;
      case 'pause':
        fault.nodes = nodes.slice(0, 1);
        // Failure detection takes about 3-6 s here (phi 8, 200 ms gossip): hold well beyond it.
        fault.holdMs = Math.max(fault.holdMs, opts.minPauseMs ?? 8000);
        break;
      case 'kill-two':
        fault.nodes = nodes.slice(0, 2);
        break;
      case 'kill-seeds':
        fault.nodes = [0, 1];
        break;
      case 'kill-busiest':
        fault.nodes = []; // chosen when it strikes: the node with the most writes in flight
        break;
      case 'remove-restart':
      case 'address-change':
        // Not a seed (n1, n2): other nodes start with the seeds' addresses, and reach them through them.
        fault.nodes = nodes.filter((i) => i >= 2).slice(0, 1);
        break;
      case 'join-decommission':
        fault.nodes = [opts.nodes]; // the spare: started (joins), then decommissioned
        break;
    }
    if (kind === 'skew') fault.skewSeconds = rng.int(60, 3600);
    faults.push(fault);
  }
  return faults;
}

/** One line per fault, to print with a failing seed. */
export function describeSchedule(faults: Fault[]): string {
  return faults
    .map((f) => {
      const n = (xs: number[]) => xs.map((i) => `n${i + 1}`).join(',');
      const who = f.others.length > 0 ? `${n(f.nodes)} | ${n(f.others)}` : n(f.nodes) || 'busiest';
      const skew = f.kind === 'skew' ? ` -${f.skewSeconds}s` : '';
      return `${f.kind}(${who}${skew}) ${f.holdMs}ms`;
    })
    .join('; ');
}
