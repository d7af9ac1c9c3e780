/**
 * Turns phase measurements into the numbers the benchmark reports: per operation and overall throughput
 * and latency percentiles (ms), cluster-versus-baseline ratios, and the plain-text tables.
 */
import { type HistogramSummary, LatencyHistogram } from './histogram.js';
import type { OperationStats, PhaseResult } from './runner.js';
import type { ServerCpu } from './server-stats.js';
import type { OperationType } from './workload.js';

/** Latency percentiles in milliseconds. */
export type LatencyMs = Omit<HistogramSummary, 'count' | 'min'>;

export interface OperationSummary {
  /** Successful operations (a read answered 300 with siblings is a success). */
  count: number;
  errors: number;
  errorsByKind: Record<string, number>;
  siblingReads: number;
  /** Successful operations per second of phase time. */
  opsPerSec: number;
  latencyMs: LatencyMs;
}

/** How many values the successful reads of a phase met: 1 is a plain value, more are siblings. */
export interface SiblingDistribution {
  reads: number;
  one: number;
  two: number;
  threeToFour: number;
  fivePlus: number;
  max: number;
  mean: number;
}

export interface PhaseSummary {
  name: string;
  elapsedSec: number;
  /** Open-loop phases: the rate operations were due at (ops/s); their latency runs from when each was due. */
  offeredOpsPerSec?: number;
  /** Reads by the number of values they met (phases with reads). */
  siblings?: SiblingDistribution;
  operations: Partial<Record<OperationType, OperationSummary>>;
  overall: OperationSummary;
  /** CPU of the server's node processes over the phase (local clusters on Linux only). */
  serverCpu?: ServerCpu;
}

export interface Comparison {
  workload: string;
  /** Cluster ops/s ÷ baseline ops/s (null when the baseline did nothing). */
  opsPerSecRatio: number | null;
  /** Cluster p99 ÷ baseline p99. */
  p99Ratio: number | null;
  operations: Partial<Record<OperationType, { opsPerSecRatio: number | null; p99Ratio: number | null }>>;
}

const OPERATION_ORDER: OperationType[] = ['insert', 'read', 'update'];

function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function summarize(
  latency: LatencyHistogram,
  errors: number,
  errorsByKind: Record<string, number>,
  siblingReads: number,
  elapsedSec: number,
): OperationSummary {
  const s = latency.summary();
  const ms = (micros: number) => round(micros / 1000);
  return {
    count: s.count,
    errors,
    errorsByKind,
    siblingReads,
    opsPerSec: elapsedSec > 0 ? round(s.count / elapsedSec, 1) : 0,
    latencyMs: {
      mean: ms(s.mean),
      p50: ms(s.p50),
      p95: ms(s.p95),
      p99: ms(s.p99),
      p999: ms(s.p999),
      max: ms(s.max),
    },
  };
}

/** The sibling distribution of reads counted by number of values ([n] reads met n). */
export function siblingDistribution(counts: readonly number[]): SiblingDistribution {
  const d: SiblingDistribution = { reads: 0, one: 0, two: 0, threeToFour: 0, fivePlus: 0, max: 0, mean: 0 };
  let values = 0;
  for (const [n, c = 0] of counts.entries()) {
    if (!c || n === 0) continue;
    d.reads += c;
    values += n * c;
    if (n === 1) d.one += c;
    else if (n === 2) d.two += c;
    else if (n <= 4) d.threeToFour += c;
    else d.fivePlus += c;
    d.max = Math.max(d.max, n);
  }
  d.mean = d.reads > 0 ? round(values / d.reads) : 0;
  return d;
}

/** Per-operation and overall summary of a phase. */
export function summarizePhase(result: PhaseResult, offeredOpsPerSec?: number): PhaseSummary {
  const elapsedSec = result.elapsedMs / 1000;
  const operations: Partial<Record<OperationType, OperationSummary>> = {};
  const all = new LatencyHistogram();
  const allErrors: Record<string, number> = {};
  let errors = 0;
  let siblingReads = 0;
  for (const type of OPERATION_ORDER) {
    const stats: OperationStats | undefined = result.operations.get(type);
    if (!stats) continue;
    operations[type] = summarize(
      stats.latency,
      stats.errors,
      stats.errorsByKind,
      stats.siblingReads,
      elapsedSec,
    );
    all.merge(stats.latency);
    errors += stats.errors;
    siblingReads += stats.siblingReads;
    for (const [kind, n] of Object.entries(stats.errorsByKind)) allErrors[kind] = (allErrors[kind] ?? 0) + n;
  }
  const reads = result.operations.get('read');
  return {
    name: result.name,
    elapsedSec: round(elapsedSec),
    ...(offeredOpsPerSec === undefined ? {} : { offeredOpsPerSec: round(offeredOpsPerSec, 1) }),
    ...(reads ? { siblings: siblingDistribution(reads.siblingCounts) } : {}),
    operations,
    overall: summarize(all, errors, allErrors, siblingReads, elapsedSec),
  };
}

function ratio(a: number, b: number): number | null {
  return b > 0 && Number.isFinite(a) ? round(a / b) : null;
}

/** Cluster-versus-baseline ratios for every phase both ran. */
export function comparePhases(cluster: PhaseSummary[], baseline: PhaseSummary[]): Comparison[] {
  const comparisons: Comparison[] = [];
  for (const c of cluster) {
    const b = baseline.find((phase) => phase.name === c.name);
    if (!b) continue;
    const operations: Comparison['operations'] = {};
    for (const type of OPERATION_ORDER) {
      const co = c.operations[type];
      const bo = b.operations[type];
      if (!co || !bo) continue;
      operations[type] = {
        opsPerSecRatio: ratio(co.opsPerSec, bo.opsPerSec),
        p99Ratio: ratio(co.latencyMs.p99, bo.latencyMs.p99),
      };
    }
    comparisons.push({
      workload: c.name,
      opsPerSecRatio: ratio(c.overall.opsPerSec, b.overall.opsPerSec),
      p99Ratio: ratio(c.overall.latencyMs.p99, b.overall.latencyMs.p99),
      operations,
    });
  }
  return comparisons;
}

/** Lays out rows with the first `leftColumns` columns left-aligned and the rest right-aligned. */
export function formatTable(header: string[], rows: string[][], leftColumns = 2): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i < leftColumns ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function fixed(value: number, digits: number): string {
  return value.toFixed(digits);
}

/** The results table of one target (cluster or baseline). */
export function formatPhaseTable(phases: PhaseSummary[]): string {
  const header = [
    'phase',
    'op',
    'count',
    'errors',
    'ops/s',
    'mean ms',
    'p50 ms',
    'p95 ms',
    'p99 ms',
    'p99.9 ms',
    'max ms',
  ];
  // Server CPU is per phase: shown on its last line (all operations).
  const cpu = phases.some((phase) => phase.serverCpu);
  if (cpu) header.push('server CPU µs/op');
  const rows: string[][] = [];
  for (const phase of phases) {
    const entries = Object.entries(phase.operations) as [OperationType, OperationSummary][];
    const lines: [string, OperationSummary][] =
      entries.length > 1 ? [...entries, ['all', phase.overall]] : entries;
    for (const [i, [op, s]] of lines.entries()) {
      const l = s.latencyMs;
      const last = i === lines.length - 1;
      const server = cpu ? [last && phase.serverCpu ? fixed(phase.serverCpu.usPerOp, 0) : ''] : [];
      rows.push([
        phase.name,
        op,
        String(s.count),
        String(s.errors),
        fixed(s.opsPerSec, 0),
        fixed(l.mean, 2),
        fixed(l.p50, 2),
        fixed(l.p95, 2),
        fixed(l.p99, 2),
        fixed(l.p999, 2),
        fixed(l.max, 2),
        ...server,
      ]);
    }
  }
  return formatTable(header, rows);
}

/** The error breakdown lines ("a/update: 503 ×12"), empty when nothing failed. */
export function formatErrors(phases: PhaseSummary[]): string[] {
  const lines: string[] = [];
  for (const phase of phases) {
    for (const [op, s] of Object.entries(phase.operations) as [OperationType, OperationSummary][]) {
      const kinds = Object.entries(s.errorsByKind).map(([kind, n]) => `${kind} ×${n}`);
      if (kinds.length > 0) lines.push(`${phase.name}/${op}: ${kinds.join(', ')}`);
    }
  }
  return lines;
}

/** The cluster ÷ baseline table. */
export function formatComparisonTable(comparisons: Comparison[]): string {
  const show = (r: number | null) => (r === null ? '-' : fixed(r, 2));
  const rows: string[][] = [];
  for (const c of comparisons) {
    rows.push([c.workload, 'all', show(c.opsPerSecRatio), show(c.p99Ratio)]);
    const entries = Object.entries(c.operations);
    if (entries.length > 1) {
      for (const [op, r] of entries) rows.push([c.workload, op, show(r.opsPerSecRatio), show(r.p99Ratio)]);
    }
  }
  return formatTable(['phase', 'op', 'ops/s ratio', 'p99 ratio'], rows);
}

const percent = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');

/** Reads by the number of values they met, per phase with reads: shares of 1, 2, 3-4 and 5+, the max. */
export function formatSiblingTable(phases: PhaseSummary[]): string {
  const rows = phases
    .filter((p): p is PhaseSummary & { siblings: SiblingDistribution } => p.siblings !== undefined)
    .map(({ name, siblings: d }) => [
      name,
      String(d.reads),
      percent(d.one, d.reads),
      percent(d.two, d.reads),
      percent(d.threeToFour, d.reads),
      percent(d.fivePlus, d.reads),
      String(d.max),
      fixed(d.mean, 2),
    ]);
  return formatTable(['phase', 'reads', '1 value', '2', '3-4', '5+', 'max', 'mean'], rows, 1);
}

/**
 * Each open-loop phase beside the closed-loop phase it took its rate from (the phase named before the
 * "@"): peak ops/s, the offered and achieved rates, p50 and p99 (timed from when operations were due).
 */
export function formatOpenLoopTable(phases: PhaseSummary[]): string {
  const rows: string[][] = [];
  for (const p of phases) {
    if (p.offeredOpsPerSec === undefined) continue;
    const peak = phases.find((q) => q.name === p.name.split('@')[0]);
    const o = p.overall;
    rows.push([
      p.name,
      peak ? fixed(peak.overall.opsPerSec, 0) : '-',
      fixed(p.offeredOpsPerSec, 0),
      fixed(o.opsPerSec, 0),
      fixed(o.latencyMs.p50, 2),
      fixed(o.latencyMs.p99, 2),
      peak ? fixed(peak.overall.latencyMs.p99, 2) : '-',
      String(o.errors),
    ]);
  }
  return formatTable(
    [
      'phase',
      'peak ops/s',
      'offered ops/s',
      'achieved ops/s',
      'p50 ms',
      'p99 ms',
      'p99 at peak ms',
      'errors',
    ],
    rows,
    1,
  );
}
