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

export interface PhaseSummary {
  name: string;
  elapsedSec: number;
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

/** Per-operation and overall summary of a phase. */
export function summarizePhase(result: PhaseResult): PhaseSummary {
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
  return {
    name: result.name,
    elapsedSec: round(elapsedSec),
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
