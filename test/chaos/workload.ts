/**
 * The chaos workload, as Jepsen's Riak set test: clients add unique elements to a few hot keys by
 * read-modify-write (read, merge the siblings as a union, add, write back with the read's context), and
 * write fresh keys blind. Every acknowledged add and blind write is recorded for the checker; nothing
 * else counts (a write that timed out may or may not be stored, and need not be found).
 */
import type { Prng } from './prng.js';

export const HOT_BUCKET = 'chaos';
export const BLIND_BUCKET = 'chaos-blind';

export interface WorkloadOptions {
  clients: number;
  hotKeys: number;
  /** Share of operations that are blind writes of a fresh key (the rest are set-adds). */
  blindShare: number;
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
  readonly adds = emptyStats();
  readonly blinds = emptyStats();
  /** Operations while a fault was held, for availability. */
  readonly duringFaults = emptyStats();
  /** Requests in flight per node index (kill-busiest strikes the node with the most). */
  readonly inFlight: number[];
  faultActive = false;
  private running = false;
  private loops: Array<Promise<void>> = [];
  private seq = 0;

  constructor(
    private readonly urls: string[],
    private readonly rng: Prng,
    private readonly opts: WorkloadOptions,
  ) {
    this.inFlight = urls.map(() => 0);
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

  /** The node index with the most requests in flight now. */
  busiest(): number {
    let best = 0;
    for (let i = 1; i < this.inFlight.length; i++) if (this.inFlight[i]! > this.inFlight[best]!) best = i;
    return best;
  }

  private async client(c: number): Promise<void> {
    while (this.running) {
      const node = this.rng.int(0, this.urls.length - 1);
      this.inFlight[node]!++;
      try {
        if (this.rng.chance(this.opts.blindShare)) await this.blindWrite(node);
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

  private count(stats: OpStats, outcome: 'ack' | 'refused' | 'error'): void {
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
    const url = this.urls[node]!;
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
      this.count(this.adds, outcome);
    } catch {
      this.count(this.adds, 'refused');
    }
  }

  private async blindWrite(node: number): Promise<void> {
    const key = `b${this.seq++}`;
    const value = `${key}@n${node + 1}`;
    try {
      const res = await fetch(`${this.urls[node]}/buckets/${BLIND_BUCKET}/keys/${key}${this.query()}`, {
        method: 'PUT',
        body: value,
        headers: { 'Content-Type': 'text/plain' },
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer();
      const outcome = this.outcome(res.status);
      if (outcome === 'ack') this.blind.set(key, value);
      this.count(this.blinds, outcome);
    } catch {
      this.count(this.blinds, 'refused');
    }
  }
}
