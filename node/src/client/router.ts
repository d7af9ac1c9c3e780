/**
 * Where a partition-aware client sends a request: the first live node of the key's preference list,
 * computed from the ring view any node serves, then the rest of the list, then any other node.
 * Pure apart from the clock it is given.
 */
import { hashKey, Ring, type RingMember } from '../ring/index.js';

/** The parts of GET /admin/ring?tokens=true the client uses. */
export interface RingView {
  cluster: string;
  n: number;
  members: Array<{ id: string; http: string | null; state: string; tokens?: string[] }>;
}

export type Routing = 'preference-list' | 'any';

export class Router {
  private ring: Ring | undefined;
  private urls = new Map<string, string>();
  private n = 3;
  /** Nodes that failed recently, until when they are tried last. */
  private readonly suspect = new Map<string, number>();
  private turn = 0;

  constructor(
    private readonly seeds: readonly string[],
    private readonly routing: Routing,
    private readonly suspectMs = 2000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Adopts a ring view; members without an HTTP URL are not sent requests directly. */
  update(view: RingView): void {
    const members: RingMember[] = [];
    this.urls = new Map();
    for (const m of view.members) {
      if (m.state === 'removed') continue;
      // Every member shapes the preference lists; only those with a known URL get requests directly.
      if (m.tokens?.length) members.push({ id: m.id, tokens: m.tokens });
      if (m.http) this.urls.set(m.id, m.http.replace(/\/$/, ''));
    }
    this.ring = members.length > 0 ? new Ring(members) : undefined;
    this.n = view.n;
  }

  get hasRing(): boolean {
    return this.ring !== undefined;
  }

  /** Marks a node's URL as failing: it goes to the back of the candidate order for a while. */
  markFailed(url: string): void {
    this.suspect.set(url, this.now() + this.suspectMs);
  }

  /** URLs to try for a request on this key, best first; never empty. */
  candidates(bucket: string, key: string): string[] {
    const all = [...new Set([...this.urls.values(), ...this.seeds.map((s) => s.replace(/\/$/, ''))])];
    let preferred: string[] = [];
    if (this.routing === 'preference-list' && this.ring) {
      preferred = this.ring
        .preferenceList(hashKey(bucket, key), this.n)
        .map((id) => this.urls.get(id))
        .filter((u): u is string => u !== undefined);
    } else {
      // Spread requests that carry no routing preference across the nodes.
      this.turn = (this.turn + 1) % all.length;
      preferred = [...all.slice(this.turn), ...all.slice(0, this.turn)];
    }
    const order = [...new Set([...preferred, ...all])];
    const now = this.now();
    const healthy = order.filter((u) => (this.suspect.get(u) ?? 0) <= now);
    const failing = order.filter((u) => (this.suspect.get(u) ?? 0) > now);
    return [...healthy, ...failing];
  }

  /** Every known node URL, seeds included. */
  endpoints(): string[] {
    return [...new Set([...this.seeds.map((s) => s.replace(/\/$/, '')), ...this.urls.values()])];
  }
}
