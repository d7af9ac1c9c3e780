/**
 * The replicated membership table that gossip spreads: one entry per member, owned and versioned by
 * that member. Pure and synchronous; a networking shell drives it with beat() on a timer and the
 * digest / delta / merge exchange with a random peer (Cassandra's SYN, ACK, ACK2):
 *   A sends A.digest();  B replies B.delta(digestA) and B.digest();  A merges, replies A.delta(digestB).
 *
 * Ordering: an entry replaces another for the same id iff its (generation, version) is greater. The
 * generation is the member's incarnation (its start time or a persisted counter; it must grow across
 * restarts), the version counts changes within one incarnation. That makes merge a join of a
 * semilattice: commutative, associative and idempotent, so every node converges to the same table
 * whatever the order and repetition of gossip.
 *
 * `down` is not here: it is each node's local failure-detector verdict, never gossiped.
 */
import { isToken, type Token } from '../ring/index.js';

/** Gossiped lifecycle of a member; 'removed' entries are tombstones. */
export type MemberStatus = 'joining' | 'up' | 'leaving' | 'removed';

/** One member's entry. Entries are immutable (frozen): a change makes a new entry. */
export interface MemberEntry {
  readonly id: string;
  /** host:port of the member's node-to-node transport. */
  readonly address: string;
  /** URL of the member's HTTP API. */
  readonly http?: string;
  readonly tokens: readonly Token[];
  readonly rack?: string;
  readonly status: MemberStatus;
  /** Incarnation, chosen by the member at start; higher means newer whatever the version. */
  readonly generation: number;
  /** Bumped by the member on each change of its entry and on each heartbeat tick. */
  readonly version: number;
  /** An admin removal's tombstone: the member that wrote it on behalf of this one. */
  readonly removedBy?: string;
  /** With mutual TLS: the writer's signature (base64) and certificate (base64 DER); see entry-signing.ts. */
  readonly sig?: string;
  readonly cert?: string;
}

/** What a node knows of each member, compactly: [id, generation, version]. */
export type Digest = Array<[id: string, generation: number, version: number]>;

/** The fields a member may change in its own entry. */
export type SelfChange = Partial<Pick<MemberEntry, 'status' | 'tokens' | 'http' | 'rack'>>;

/**
 * How far ahead of the last known version an admin removal puts its tombstone. The tombstone is
 * written on behalf of a dead member, keeping its generation, so it must beat anything that
 * incarnation may still be gossiping: it would take 10^6 heartbeats (11 days at 1/s) unseen by the
 * remover to overtake it. A new incarnation (a higher generation) still wins: that is a rejoin.
 */
export const REMOVAL_VERSION_LEAD = 1_000_000;

const STATUSES: ReadonlySet<string> = new Set<MemberStatus>(['joining', 'up', 'leaving', 'removed']);

/** Thrown when a peer from another cluster gossips with us; its membership must never be merged. */
export class ClusterMismatchError extends Error {
  constructor(
    readonly local: string,
    readonly remote: string,
  ) {
    super(
      `gossip: peer belongs to cluster '${remote}' but this node to cluster '${local}'; not merging its membership`,
    );
    this.name = 'ClusterMismatchError';
  }
}

/** Throws ClusterMismatchError unless a peer's cluster name equals ours. */
export function checkCluster(local: string, remote: string): void {
  if (local !== remote) throw new ClusterMismatchError(local, remote);
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const byId = (a: MemberEntry, b: MemberEntry): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** A frozen, normalized copy of an entry read from outside (disk, a peer); throws Error if invalid. */
export const validateEntry = (entry: unknown): MemberEntry => freezeEntry(entry as MemberEntry);

/** A frozen, normalized copy of entry (no unknown fields, no undefined optionals); throws Error if invalid. */
function freezeEntry(entry: MemberEntry): MemberEntry {
  const bad = (why: string) => new Error(`gossip: invalid member entry '${String(entry?.id)}': ${why}`);
  if (typeof entry !== 'object' || entry === null) throw bad('not an object');
  if (typeof entry.id !== 'string' || entry.id === '') throw bad('id must be a non-empty string');
  if (typeof entry.address !== 'string') throw bad('address must be a string');
  if (entry.http !== undefined && typeof entry.http !== 'string') throw bad('http must be a string');
  if (entry.rack !== undefined && typeof entry.rack !== 'string') throw bad('rack must be a string');
  for (const field of ['removedBy', 'sig', 'cert'] as const)
    if (entry[field] !== undefined && typeof entry[field] !== 'string')
      throw bad(`${field} must be a string`);
  if (!STATUSES.has(entry.status)) throw bad(`unknown status '${String(entry.status)}'`);
  if (!isCount(entry.generation)) throw bad('generation must be a non-negative integer');
  if (!isCount(entry.version)) throw bad('version must be a non-negative integer');
  if (!Array.isArray(entry.tokens) || !entry.tokens.every((t) => typeof t === 'string' && isToken(t)))
    throw bad('tokens must be a list of 32-hex-digit tokens');
  const copy: Mutable<MemberEntry> = {
    id: entry.id,
    address: entry.address,
    tokens: Object.isFrozen(entry.tokens) ? entry.tokens : Object.freeze([...entry.tokens]),
    status: entry.status,
    generation: entry.generation,
    version: entry.version,
  };
  if (entry.http !== undefined) copy.http = entry.http;
  if (entry.rack !== undefined) copy.rack = entry.rack;
  if (entry.removedBy !== undefined) copy.removedBy = entry.removedBy;
  if (entry.sig !== undefined) copy.sig = entry.sig;
  if (entry.cert !== undefined) copy.cert = entry.cert;
  return Object.freeze(copy);
}

/** Content of an entry beyond its (generation, version), for breaking ties deterministically. */
const content = (e: MemberEntry): string =>
  JSON.stringify([e.address, e.http, e.rack, e.tokens, e.removedBy ?? null]);

/**
 * Total order of entries for one id: (generation, version), then on a tie (only possible when an
 * admin tombstone collides with the member's own version) 'removed' wins, then content decides, so
 * merge stays order-independent even then.
 */
export function compareEntries(a: MemberEntry, b: MemberEntry): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  if (a.version !== b.version) return a.version < b.version ? -1 : 1;
  const aRemoved = a.status === 'removed';
  if (aRemoved !== (b.status === 'removed')) return aRemoved ? 1 : -1;
  if (a.status !== b.status) return a.status < b.status ? -1 : 1;
  const ac = content(a);
  const bc = content(b);
  return ac === bc ? 0 : ac < bc ? -1 : 1;
}

/** This node's copy of the cluster's membership table. */
export class GossipState {
  private readonly entries = new Map<string, MemberEntry>();
  private selfEntry: MemberEntry;
  private previous: MemberEntry | undefined;
  /** members() sorted by id, rebuilt lazily after a change. */
  private sorted: readonly MemberEntry[] | undefined;

  /**
   * Throws Error when self is not a valid entry. seal signs each entry this node writes (its own, and
   * the tombstones of admin removals); identity when entries travel unsigned.
   */
  constructor(
    readonly cluster: string,
    self: MemberEntry,
    private readonly seal: (entry: MemberEntry) => MemberEntry = (e) => e,
  ) {
    this.selfEntry = freezeEntry(this.seal(self));
    this.entries.set(this.selfEntry.id, this.selfEntry);
  }

  /** This node's own entry. */
  get self(): MemberEntry {
    return this.selfEntry;
  }

  /**
   * The newest entry peers gossiped about an earlier incarnation of this node (before this start), if
   * any: a node that lost its data and rejoins under the same id learns here that it was a member.
   */
  get previousIncarnation(): MemberEntry | undefined {
    return this.previous;
  }

  /** Every known entry, tombstones included, sorted by id. */
  members(): readonly MemberEntry[] {
    this.sorted ??= Object.freeze([...this.entries.values()].sort(byId));
    return this.sorted;
  }

  /** The entry for id, or undefined when unknown (or forgotten). */
  get(id: string): MemberEntry | undefined {
    return this.entries.get(id);
  }

  /** Heartbeat tick: bumps our own version so peers see we are alive. */
  beat(): void {
    this.setSelf({ ...this.selfEntry, version: this.selfEntry.version + 1 });
  }

  /** Changes our own entry (an undefined http or rack clears it) and bumps its version. */
  updateSelf(change: SelfChange): void {
    const next: Mutable<MemberEntry> = { ...this.selfEntry, version: this.selfEntry.version + 1 };
    if (change.status !== undefined) next.status = change.status;
    if (change.tokens !== undefined) next.tokens = change.tokens;
    if ('http' in change) next.http = change.http;
    if ('rack' in change) next.rack = change.rack;
    this.setSelf(next);
  }

  /** [id, generation, version] of every entry, sorted by id: what we send to start an exchange. */
  digest(): Digest {
    return this.members().map((e) => [e.id, e.generation, e.version]);
  }

  /** Our entries newer than the peer's digest says it has, or unknown to it: what it is missing. */
  delta(theirDigest: Digest): MemberEntry[] {
    const theirs = new Map<string, [number, number]>();
    for (const [id, generation, version] of theirDigest) theirs.set(id, [generation, version]);
    return this.members().filter((e) => {
      const known = theirs.get(e.id);
      if (known === undefined) return true;
      const [generation, version] = known;
      // An older incarnation than theirs is sent too: the asker may be that member, restarted, and
      // learns what it was (its tokens, or that it was removed); anyone else ignores an older entry.
      return e.generation !== generation || e.version > version;
    });
  }

  /**
   * Takes every entry newer than ours (see compareEntries); returns the entries that changed, sorted
   * by id. Entries about ourselves are ignored: only this node speaks for itself. Validates every
   * entry before applying any, so an invalid one throws Error and leaves the table as it was.
   */
  merge(entries: readonly MemberEntry[]): { changed: MemberEntry[] } {
    const winners = new Map<string, MemberEntry>();
    for (const raw of entries) {
      const entry = freezeEntry(raw);
      if (entry.id === this.selfEntry.id) {
        const older = entry.generation < this.selfEntry.generation;
        if (older && (this.previous === undefined || compareEntries(entry, this.previous) > 0))
          this.previous = entry;
        continue;
      }
      const best = winners.get(entry.id) ?? this.entries.get(entry.id);
      if (best === undefined || compareEntries(entry, best) > 0) winners.set(entry.id, entry);
    }
    const changed = [...winners.values()].sort(byId);
    for (const entry of changed) this.entries.set(entry.id, entry);
    if (changed.length > 0) this.sorted = undefined;
    return { changed };
  }

  /**
   * Admin removal of a (dead) member: writes a tombstone on its behalf, same generation, version
   * REMOVAL_VERSION_LEAD past the last we know, so the member's own stale gossip cannot revive it.
   * No-op if already removed; throws Error for ourselves (decommission instead) or an unknown id.
   */
  markRemoved(id: string): MemberEntry {
    if (id === this.selfEntry.id)
      throw new Error(`gossip: cannot remove this node (${id}) on its own behalf`);
    const entry = this.entries.get(id);
    if (entry === undefined) throw new Error(`gossip: cannot remove unknown member '${id}'`);
    if (entry.status === 'removed') return entry;
    const { sig: _sig, cert: _cert, ...fields } = entry;
    const tombstone = freezeEntry(
      this.seal({
        ...fields,
        status: 'removed',
        version: entry.version + REMOVAL_VERSION_LEAD,
        removedBy: this.selfEntry.id,
      }),
    );
    this.entries.set(id, tombstone);
    this.sorted = undefined;
    return tombstone;
  }

  /**
   * Drops a tombstone for good. Only safe once every node holds it (after a grace period): a node
   * still gossiping the live entry would otherwise bring it back. Throws Error unless id is removed.
   */
  forget(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    if (entry.status !== 'removed') throw new Error(`gossip: cannot forget '${id}', it is ${entry.status}`);
    this.entries.delete(id);
    this.sorted = undefined;
  }

  private setSelf(entry: MemberEntry): void {
    this.selfEntry = freezeEntry(this.seal(entry));
    this.entries.set(this.selfEntry.id, this.selfEntry);
    this.sorted = undefined;
  }
}
