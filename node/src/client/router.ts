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
  /** Every known URL, seeds included, in a fixed order. */
  private all: string[];
  private n = 3;
  /** Nodes that failed recently, until when they are tried last. */
  private readonly suspect = new Map<string, number>();
  private turn = 0;

  constructor(
    private readonly seeds: readonly string[],
    private readonly routing: Routing,
    private readonly suspectMs = 2000,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {
    this.all = [...new Set(seeds.map(trimSlash))];
  }

  /** Adopts a ring view; members without an HTTP URL are not sent requests directly. */
  update(view: RingView): void {
    const members: RingMember[] = [];
    this.urls = new Map();
    for (const m of view.members) {
      if (m.state === 'removed') continue;
      // Every member shapes the preference lists; only those with a known URL get requests directly.
      if (m.tokens?.length) members.push({ id: m.id, tokens: m.tokens });
      if (m.http) this.urls.set(m.id, trimSlash(m.http));
    }
    this.ring = members.length > 0 ? new Ring(members) : undefined;
    this.n = view.n;
    this.all = [...new Set([...this.urls.values(), ...this.seeds.map(trimSlash)])];
  }

  get hasRing(): boolean {
    return this.ring !== undefined;
  }

  /** Marks a node's URL as failing: it goes to the back of the candidate order for a while. */
  markFailed(url: string): void {
    this.suspect.set(url, this.now() + this.suspectMs);
  }

  /**
   * URLs to try for a request on this key, best first; never empty. In preference-list mode the key's
   * replicas come first: for a write the first replica (one coordinator per key keeps concurrent writers
   * from making siblings), for a read a random one (spreads the load of hot keys).
   */
  candidates(bucket: string, key: string, kind: 'read' | 'write' = 'write'): string[] {
    let preferred: string[];
    if (this.routing === 'preference-list' && this.ring) {
      preferred = [];
      for (const id of this.ring.preferenceList(hashKey(bucket, key), this.n)) {
        const url = this.urls.get(id);
        if (url !== undefined) preferred.push(url);
      }
      if (kind === 'read' && preferred.length > 1) {
        const start = Math.floor(this.random() * preferred.length);
        preferred = [...preferred.slice(start), ...preferred.slice(0, start)];
      }
    } else {
      // Spread requests that carry no routing preference across the nodes.
      this.turn = (this.turn + 1) % this.all.length;
      preferred = [...this.all.slice(this.turn), ...this.all.slice(0, this.turn)];
    }
    const order =
      preferred.length === this.all.length ? preferred : [...new Set([...preferred, ...this.all])];
    if (this.suspect.size === 0) return order;
    const now = this.now();
    for (const [url, until] of this.suspect) if (until <= now) this.suspect.delete(url);
    return [...order.filter((u) => !this.suspect.has(u)), ...order.filter((u) => this.suspect.has(u))];
  }

  /** Every known node URL, seeds included. */
  endpoints(): string[] {
    return this.all;
  }
}

function trimSlash(url: string): string {
  return url.replace(/\/$/, '');
}
