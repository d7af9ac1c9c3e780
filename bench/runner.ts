/**
 * Runs one benchmark phase (load or a workload) with N clients, until the operation count or the duration
 * is reached. Closed loop (no rate): each client sends its next operation as soon as the previous one
 * answered, which measures the peak. Open loop (a rate in ops/s): operation i is due at start + i/rate and
 * a free client sends it then (or as soon as one is free); its latency runs from when it was due, not from
 * when it was sent, so a stall counts for every operation it delayed (no coordinated omission, as wrk2).
 * Latency of successful operations goes into a histogram per operation type; failures are counted by kind
 * and never stop the phase; reads also count how many siblings they met.
 */
import { performance } from 'node:perf_hooks';
import type { KvClient } from './client.js';
import { LatencyHistogram } from './histogram.js';
import type { Operation, OperationType } from './workload.js';

/** What happened to the operations of one type in a phase. */
export class OperationStats {
  /** Latency in microseconds of the successful operations. */
  readonly latency = new LatencyHistogram();
  errors = 0;
  /** Failures by HTTP status ("503") or network error code ("ECONNREFUSED"). */
  readonly errorsByKind: Record<string, number> = {};
  /** Reads answered 300 Multiple Choices (siblings); they count as successful reads. */
  siblingReads = 0;
  /** Successful reads by the number of values they met: [n] reads met n values (1: no siblings). */
  readonly siblingCounts: number[] = [];

  recordError(kind: string): void {
    this.errors += 1;
    this.errorsByKind[kind] = (this.errorsByKind[kind] ?? 0) + 1;
  }
}

/** The measurements of one phase. */
export interface PhaseResult {
  name: string;
  elapsedMs: number;
  operations: Map<OperationType, OperationStats>;
}

export interface PhasePlan {
  name: string;
  bucket: string;
  concurrency: number;
  /** Stop after this many operations (when set). */
  operations?: number;
  /** Stop once this much time has passed (when set). */
  durationMs?: number;
  /** The operation to issue as the index-th of the phase. */
  nextOperation: (index: number) => Operation;
  signal: AbortSignal;
  /**
   * Open loop: operations are due at this fixed rate (ops/s), sent by at most `concurrency` clients at
   * once, and timed from when they were due. Unset: closed loop.
   */
  rate?: number;
  /** Called about every second with the number of finished operations. */
  onProgress?: (done: number, elapsedMs: number) => void;
}

/** A short name for a failed request: its error code or its class. */
export function networkErrorKind(err: unknown): string {
  if (err && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const name = (err as { name?: unknown }).name;
    if (typeof name === 'string') return name;
  }
  return 'error';
}

/** Resolves after `ms`, or at once when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Runs the phase to its end (or until the signal aborts) and returns its measurements. */
export async function runPhase(client: KvClient, plan: PhasePlan): Promise<PhaseResult> {
  if (plan.operations === undefined && plan.durationMs === undefined) {
    throw new Error(`phase ${plan.name} needs an operation count or a duration`);
  }
  const rate = plan.rate;
  if (rate !== undefined && !(rate > 0 && Number.isFinite(rate))) {
    throw new Error(`phase ${plan.name}: rate must be a number > 0, got ${rate}`);
  }
  const operations = new Map<OperationType, OperationStats>();
  const statsFor = (type: OperationType): OperationStats => {
    let stats = operations.get(type);
    if (!stats) {
      stats = new OperationStats();
      operations.set(type, stats);
    }
    return stats;
  };

  const started = performance.now();
  const deadline = plan.durationMs === undefined ? Number.POSITIVE_INFINITY : started + plan.durationMs;
  const limit = plan.operations ?? Number.POSITIVE_INFINITY;
  let issued = 0;
  let done = 0;
  let finished = started;

  const progress =
    plan.onProgress && setInterval(() => plan.onProgress?.(done, performance.now() - started), 1000).unref();

  const runClient = async (): Promise<void> => {
    while (!plan.signal.aborted && issued < limit) {
      const index = issued;
      // Open loop: the operation's due time; closed loop: now.
      const due = rate === undefined ? performance.now() : started + (index * 1000) / rate;
      if (due >= deadline) return;
      issued += 1;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait, plan.signal);
      if (plan.signal.aborted) return;
      const op = plan.nextOperation(index);
      const stats = statsFor(op.type);
      const t0 = rate === undefined ? performance.now() : due;
      let status = 0;
      let values = 0;
      let failure: string | undefined;
      try {
        if (op.type === 'read') ({ status, values } = await client.get(plan.bucket, op.key));
        else status = await client.put(plan.bucket, op.key, op.value ?? Buffer.alloc(0));
      } catch (err) {
        failure = networkErrorKind(err);
      }
      const t1 = performance.now();
      if (plan.signal.aborted) return;
      done += 1;
      finished = t1;
      if (failure !== undefined) {
        stats.recordError(failure);
      } else if ((status >= 200 && status < 300) || (op.type === 'read' && status === 300)) {
        stats.latency.record((t1 - t0) * 1000);
        if (status === 300) stats.siblingReads += 1;
        if (op.type === 'read') stats.siblingCounts[values] = (stats.siblingCounts[values] ?? 0) + 1;
      } else {
        stats.recordError(String(status));
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: plan.concurrency }, runClient));
  } finally {
    if (progress) clearInterval(progress);
  }
  return { name: plan.name, elapsedMs: finished - started, operations };
}
