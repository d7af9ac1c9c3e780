/**
 * The chaos workload, as Jepsen's Riak set test: clients add unique elements to a few hot keys by
 * read-modify-write (read, merge the siblings as a union, add, write back with the read's context),
 * write fresh keys blind, and write fresh keys that they then delete. Every acknowledged add and blind
 * write is recorded for the checker; nothing else counts (a write that timed out may or may not be
 * stored, and need not be found).
 *
 * Deletes: a fresh key is written (acknowledged, with the context the write returned), read, and deleted
 * with the read's context. The delete is an *acknowledged delete* (the key must read 404 everywhere once
 * the cluster has converged) only when the read returned exactly the value written and its context
 * descends the write's: the delete then supersedes every version of the key, for no other write ever
 * goes to it. A share of deletes is sent without a context instead (and so is any delete whose read saw
 * nothing, and so returned no context): such a tombstone is concurrent with the value, which must
 * survive it, as Dynamo keeps concurrent writes. Any other delete (a context not provably covering the
 * value), and a delete with a context that was not acknowledged, promise nothing: the key is not checked.
 */

import { inspectContext } from '../../node/src/version/context.js';
import { descends } from '../../node/src/version/dvvset.js';
import type { Prng } from './prng.js';

export const HOT_BUCKET = 'chaos';
export const BLIND_BUCKET = 'chaos-blind';
export const DELETE_BUCKET = 'chaos-del';

/** The node indices clients may send to (members, as the test knows them) and their current URLs. */
export interface Endpoints {
  /** Node indices that are members: never a node that has not joined yet, or has left or been removed. */
  active(): readonly number[];
  url(i: number): string;
  /** Number of node slots (spares included): per-node counters are indexed by node. */
  size: number;
}

export interface WorkloadOptions {
  clients: number;
  hotKeys: number;
  /** Share of operations that are blind writes of a fresh key. */
  blindShare: number;
  /** Share of operations that write a fresh key and then delete it (the rest are set-adds). */
  deleteShare: number;
  /** Share of deletes sent without a context: the tombstone is concurrent with the value, which survives. */
  uncoveredShare: number;
  /**
   * The checker's self-check: also count deletes whose context did not cover the value as acknowledged
   * deletes (a wrong classification, as lww is a wrong conflict mode): the checker must see those values
   * come back, as resurrected.
   */
  misclassifyUncovered?: boolean;
  /** Share of writes sent with ?strict=true (only true replicas count towards w). */
  strictShare: number;
  timeoutMs: number;
}

export interface OpStats {
  attempted: number;
  acknowledged: number;
  /** 5xx answers other than 503, and 500s in particular: bugs, never expected. */
  serverErrors: number;
  /** 503 and network errors: refusals the promises allow under faults. */
  refused: number;
}

const emptyStats = (): OpStats => ({ attempted: 0, acknowledged: 0, serverErrors: 0, refused: 0 });

/**
 * What a delete sent with a read's context does to the one value a fresh key was written with:
 * - covered: the read returned exactly that value and its context descends the context the write's
 *   acknowledgement returned, so the delete supersedes every version of the key;
 * - uncovered: the read sent no context (it saw nothing yet), so the tombstone is concurrent with the
 *   value, which must survive it;
 * - unknown: anything else (a context that names some versions but not provably all): neither is
 *   promised, and the key is not checked.
 */
export type DeleteKind = 'covered' | 'uncovered' | 'unknown';

export function classifyDelete(
  read: { status: number; values: string[]; context: string | undefined },
  value: string,
  writeContext: string | undefined,
): DeleteKind {
  if (!read.context) return 'uncovered';
  if (read.status !== 200 || read.values.length !== 1 || read.values[0] !== value || !writeContext)
    return 'unknown';
  try {
    // The client's view of the vector (the MAC is the nodes' to check).
    return descends(inspectContext(read.context), inspectContext(writeContext)) ? 'covered' : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The elements of a set stored as a JSON array; siblings merge as a union. */
export function parseSet(text: string): string[] {
  try {
    const parsed = JSON.parse(text) as unknown;
    return Array.isArray(parsed) ? parsed.map(String) : [];
  } catch {
    return [];
  }
}

export interface ReadResult {
  status: number;
  /** Union of the elements of every sibling. */
  elements: Set<string>;
  siblings: number;
  context: string | undefined;
}

/** Reads a set key: the union of its siblings' elements and the context to write back with. */
export async function readSet(url: string, bucket: string, key: string, query: string, timeoutMs: number) {
  const res = await fetch(`${url}/buckets/${bucket}/keys/${key}${query}`, {
    signal: AbortSignal.timeout(timeoutMs),
  });
  const context = res.headers.get('x-dynamo-context') ?? undefined;
  const out: ReadResult = { status: res.status, elements: new Set(), siblings: 0, context };
  if (res.status === 200) {
    for (const e of parseSet(await res.text())) out.elements.add(e);
    out.siblings = 1;
  } else if (res.status === 300) {
    const body = (await res.json()) as { siblings: Array<{ value: string }> };
    out.siblings = body.siblings.length;
    for (const s of body.siblings)
      for (const e of parseSet(Buffer.from(s.value, 'base64').toString())) out.elements.add(e);
  } else await res.arrayBuffer();
  return out;
}

export class SetWorkload {
  /** Acknowledged elements per hot key. */
  readonly acked = new Map<string, Set<string>>();
  /** Every element ever sent (acknowledged or not): anything else found is unexpected. */
  readonly attemptedElements = new Set<string>();
  /** Acknowledged blind writes: key -> value. */
  readonly blind = new Map<string, string>();
  /** Keys of DELETE_BUCKET whose acknowledged delete covered their one acknowledged value: must read 404. */
  readonly deleted = new Set<string>();
  /**
   * Keys of DELETE_BUCKET with an acknowledged value that only a delete without a context was sent for
   * (or none: the read failed): key -> value, which must be read. Keys a delete with a context was sent
   * for are in deleted when it was acknowledged and covered the value, else in neither.
   */
  readonly kept = new Map<string, string>();
  /** How each key of deleted got there, for the report of a resurrection. */
  readonly deleteHistory = new Map<string, DeleteHistory>();
  /** Deletes acknowledged without a context (their keys are in kept). */
  uncoveredDeletes = 0;
  /** Deletes acknowledged with a context not known to cover the value (their keys are not checked). */
  unknownDeletes = 0;
  readonly adds = emptyStats();
  readonly blinds = emptyStats();
  /** The DELETE of each delete operation (an operation failing before it counts its failing step). */
  readonly deletes = emptyStats();
  /** Operations while a fault was held, for availability. */
  readonly duringFaults = emptyStats();
  /** Requests in flight per node index (kill-busiest strikes the node with the most). */
  readonly inFlight: number[];
  /** Writes (adds, blind writes, deletes) acknowledged through each node index. */
  readonly ackedBy: number[];
  faultActive = false;
  private running = false;
  private loops: Array<Promise<void>> = [];
  private seq = 0;

  constructor(
    private readonly endpoints: Endpoints,
    private readonly rng: Prng,
    private readonly opts: WorkloadOptions,
  ) {
    this.inFlight = Array.from({ length: endpoints.size }, () => 0);
    this.ackedBy = Array.from({ length: endpoints.size }, () => 0);
    for (let k = 0; k < opts.hotKeys; k++) this.acked.set(`hot${k}`, new Set());
  }

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.opts.clients }, (_, c) => this.client(c));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** The member with the most requests in flight now. */
  busiest(): number {
    const active = this.endpoints.active();
    let best = active[0] ?? 0;
    for (const i of active) if (this.inFlight[i]! > this.inFlight[best]!) best = i;
    return best;
  }

  private async client(c: number): Promise<void> {
    while (this.running) {
      const active = this.endpoints.active();
      const node = active[this.rng.int(0, active.length - 1)]!;
      this.inFlight[node]!++;
      try {
        const op = this.rng.next();
        if (op < this.opts.blindShare) await this.blindWrite(node);
        else if (op < this.opts.blindShare + this.opts.deleteShare) await this.writeAndDelete(node);
        else await this.add(c, node);
      } finally {
        this.inFlight[node]!--;
      }
      await new Promise((r) => setTimeout(r, this.rng.int(0, 5)));
    }
  }

  private query(): string {
    return this.rng.chance(this.opts.strictShare) ? '?strict=true' : '';
  }

  private count(stats: OpStats, outcome: 'ack' | 'refused' | 'error', node?: number): void {
    if (outcome === 'ack' && node !== undefined) this.ackedBy[node]!++;
    for (const s of this.faultActive ? [stats, this.duringFaults] : [stats]) {
      s.attempted++;
      if (outcome === 'ack') s.acknowledged++;
      else if (outcome === 'refused') s.refused++;
      else s.serverErrors++;
    }
  }

  private outcome(status: number): 'ack' | 'refused' | 'error' {
    if (status >= 200 && status < 300) return 'ack';
    return status >= 500 && status !== 503 ? 'error' : 'refused';
  }

  private async add(c: number, node: number): Promise<void> {
    const url = this.endpoints.url(node);
    const key = `hot${this.rng.int(0, this.opts.hotKeys - 1)}`;
    const element = `c${c}-${this.seq++}`;
    let read: ReadResult;
    try {
      read = await readSet(url, HOT_BUCKET, key, '', this.opts.timeoutMs);
    } catch {
      return this.count(this.adds, 'refused');
    }
    if (read.status !== 200 && read.status !== 300 && read.status !== 404) {
      return this.count(this.adds, this.outcome(read.status));
    }
    const next = [...read.elements, element].sort();
    this.attemptedElements.add(element);
    try {
      const res = await fetch(`${url}/buckets/${HOT_BUCKET}/keys/${key}${this.query()}`, {
        method: 'PUT',
        body: JSON.stringify(next),
        headers: {
          'Content-Type': 'application/json',
          ...(read.context ? { 'X-Dynamo-Context': read.context } : {}),
        },
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer();
      const outcome = this.outcome(res.status);
      if (outcome === 'ack') this.acked.get(key)!.add(element);
      this.count(this.adds, outcome, node);
    } catch {
      this.count(this.adds, 'refused');
    }
  }

  private async blindWrite(node: number): Promise<void> {
    const key = `b${this.seq++}`;
    const value = `${key}@n${node + 1}`;
    try {
      const res = await fetch(
        `${this.endpoints.url(node)}/buckets/${BLIND_BUCKET}/keys/${key}${this.query()}`,
        {
          method: 'PUT',
          body: value,
          headers: { 'Content-Type': 'text/plain' },
          signal: AbortSignal.timeout(this.opts.timeoutMs),
        },
      );
      await res.arrayBuffer();
      const outcome = this.outcome(res.status);
      if (outcome === 'ack') this.blind.set(key, value);
      this.count(this.blinds, outcome, node);
    } catch {
      this.count(this.blinds, 'refused');
    }
  }

  /** Writes a fresh key of DELETE_BUCKET, reads it and deletes it (see the file's comment). */
  private async writeAndDelete(node: number): Promise<void> {
    const url = this.endpoints.url(node);
    const key = `d${this.seq++}`;
    const value = `${key}@n${node + 1}`;
    const path = `${url}/buckets/${DELETE_BUCKET}/keys/${key}`;
    let writeContext: string | undefined;
    const started = Date.now();
    const putQuery = this.query();
    try {
      const res = await fetch(`${path}${putQuery}`, {
        method: 'PUT',
        body: value,
        headers: { 'Content-Type': 'text/plain' },
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer();
      const outcome = this.outcome(res.status);
      if (outcome !== 'ack') return this.count(this.deletes, outcome);
      writeContext = res.headers.get('x-dynamo-context') ?? undefined;
    } catch {
      return this.count(this.deletes, 'refused');
    }
    // Acknowledged: it must be read, unless a delete that covers it is acknowledged.
    this.kept.set(key, value);
    let context: string | undefined;
    let kind: DeleteKind = 'uncovered';
    if (!this.rng.chance(this.opts.uncoveredShare)) {
      try {
        const read = await readWithContext(path, this.opts.timeoutMs);
        if (read.status !== 200 && read.status !== 300 && read.status !== 404)
          return this.count(this.deletes, this.outcome(read.status));
        kind = classifyDelete(read, value, writeContext);
        context = read.context;
      } catch {
        return this.count(this.deletes, 'refused');
      }
    }
    // Sent with a context that may supersede the value: the value need not be found any more.
    if (kind !== 'uncovered') this.kept.delete(key);
    let outcome: 'ack' | 'refused' | 'error' = 'refused';
    const deleteQuery = this.query();
    const deleteAt = Date.now();
    try {
      const res = await fetch(`${path}${deleteQuery}`, {
        method: 'DELETE',
        headers: context ? { 'X-Dynamo-Context': context } : {},
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer();
      outcome = this.outcome(res.status);
    } catch {
      outcome = 'refused';
    }
    this.count(this.deletes, outcome, node);
    if (outcome !== 'ack') return;
    if (kind === 'covered' || this.opts.misclassifyUncovered) {
      const vv = (c: string | undefined) => (c ? JSON.stringify(inspectContext(c)) : 'none');
      this.deleteHistory.set(key, {
        node: `n${node + 1}`,
        at: `${new Date(started).toISOString()} put${putQuery} (write context ${vv(writeContext)}), ${deleteAt - started} ms later delete${deleteQuery} with ${vv(context)}${this.faultActive ? ', during a fault' : ''}`,
      });
    }
    if (kind === 'covered') this.deleted.add(key);
    else if (kind === 'unknown') this.unknownDeletes++;
    else {
      this.uncoveredDeletes++;
      if (this.opts.misclassifyUncovered) this.deleted.add(key);
    }
  }
}

export interface DeleteHistory {
  /** The node the write, read and delete went through. */
  node: string;
  /** When, with which contexts (their version vectors) and queries. */
  at: string;
}

/** A read of a key's values (decoded siblings) with its context. */
async function readWithContext(path: string, timeoutMs: number) {
  const res = await fetch(path, { signal: AbortSignal.timeout(timeoutMs) });
  const context = res.headers.get('x-dynamo-context') ?? undefined;
  if (res.status === 200) return { status: 200, values: [await res.text()], context };
  if (res.status === 300) {
    const body = (await res.json()) as { siblings: Array<{ value: string }> };
    const values = body.siblings.map((s) => Buffer.from(s.value, 'base64').toString());
    return { status: 300, values, context };
  }
  await res.arrayBuffer();
  return { status: res.status, values: [] as string[], context };
}
