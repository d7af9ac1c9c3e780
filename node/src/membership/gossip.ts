/**
 * Gossip membership: the shell around GossipState and the phi-accrual detector. Every interval this node
 * bumps its heartbeat and does a push-pull exchange of digests with one random live member (and, now and
 * then, an unreachable member or a seed). Seeds are only contact points: once joined, any member serves.
 */
import type { Logger } from 'pino';
import { InvalidRequestError, PeerUnavailableError } from '../errors.js';
import { Ring, type RingMember } from '../ring/index.js';
import type { EntrySigner } from './entry-signing.js';
import {
  checkCluster,
  type Digest,
  GossipState,
  type MemberEntry,
  type MemberStatus,
} from './gossip-state.js';
import type { Member, MemberState, Membership } from './membership.js';
import { PhiAccrualDetector } from './phi.js';

/** Sends a request to a member id, or to a seed address given as `seed:host:port`. */
export type GossipRequest = (peer: string, body: unknown, timeoutMs: number) => Promise<unknown>;

export type GossipMessage =
  | { op: 'gossip.syn'; cluster: string; digest: Digest }
  | { op: 'gossip.push'; cluster: string; entries: MemberEntry[] };

interface SynReply {
  cluster: string;
  entries: MemberEntry[];
  digest: Digest;
}

export interface GossipOptions {
  self: MemberEntry;
  cluster: string;
  /** Transport addresses (host:port) of seed nodes. */
  seeds: string[];
  request: GossipRequest;
  intervalMs: number;
  phiThreshold: number;
  log: Logger;
  now?: () => number;
  /**
   * The members this node knew when it last ran (persisted in its data directory), or undefined on a
   * first start. A node that knew other members is joined only once it has exchanged gossip with one of
   * them or a seed: until then it is not ready and serves no client request (it must not coordinate on
   * a partial ring, as two seeds restarted together would: a ring of just themselves).
   */
  known?: MemberEntry[];
  /** Called with every entry but this node's whenever the table changes, to persist them. */
  onChange?: (entries: MemberEntry[]) => void;
  /**
   * This node restarts on data of an earlier incarnation: if peers say that incarnation was removed
   * from the cluster, it must not come back with that stale data (join and exchanges throw
   * RemovedMemberError before this node's entry is pushed anywhere).
   */
  refuseIfRemoved?: boolean;
  /**
   * This node may found a new cluster (--bootstrap on its first start): it counts as joined at once,
   * and founds the ring if no seed answers. Every other node waits to hear from a member.
   */
  bootstrap?: boolean;
  /**
   * This node was a member (up or leaving) before this start. If it knew no other member then, the ring
   * it belonged to is itself alone, and it serves at once (a one-node cluster restarting).
   */
  wasMember?: boolean;
  /**
   * With mutual TLS: signs the entries this node writes and checks every entry it is told of
   * (entry-signing.ts). Without it entries travel unsigned and are taken as they are.
   */
  signer?: EntrySigner;
}

/** A node restarted on the data of a member the cluster removed. */
export class RemovedMemberError extends InvalidRequestError {
  constructor(id: string) {
    super(
      'removed_member',
      `node ${id} was removed from the cluster; its data is as stale as its absence and may bring deleted values back. To join again, start it with an empty --data-dir`,
    );
  }
}

/** True when a and b take the same place in a ring: same id, rack and tokens (in order). */
const samePlace = (a: RingMember, b: RingMember) =>
  a.id === b.id &&
  a.rack === b.rack &&
  a.tokens.length === b.tokens.length &&
  a.tokens.every((t, j) => t === b.tokens[j]);

/** previous when it has exactly these members (ids, tokens and racks, in order), else a new Ring. */
function ringOf(members: readonly Member[], previous: Ring | undefined): Ring {
  const same =
    previous !== undefined &&
    previous.members.length === members.length &&
    previous.members.every((m, i) => samePlace(m, members[i]!));
  return same ? previous : new Ring(members);
}

/** The address form a seed is requested by. */
export const seedPeer = (address: string) => `seed:${address}`;

export class GossipMembership implements Membership {
  readonly self: string;
  readonly cluster: string;
  private readonly table: GossipState;
  private readonly detector: PhiAccrualDetector;
  private readonly now: () => number;
  private theRing!: Ring;
  private thePendingRing: Ring | undefined;
  private list: Member[] = [];
  private timer: NodeJS.Timeout | undefined;
  private joined: boolean;

  constructor(private readonly opts: GossipOptions) {
    this.self = opts.self.id;
    this.cluster = opts.cluster;
    this.now = opts.now ?? Date.now;
    const signer = opts.signer;
    this.table = new GossipState(opts.cluster, opts.self, signer ? (e) => signer.seal(e) : undefined);
    this.detector = new PhiAccrualDetector({ threshold: opts.phiThreshold });
    const known = (opts.known ?? []).filter((e) => e.id !== opts.self.id);
    if (known.length > 0) {
      this.table.merge(known);
      // Heard of at start: the detector holds them down if they stay silent, as for any member.
      for (const e of known) this.detector.heartbeat(e.id, this.now());
    }
    this.rebuild();
    // Only the node designated to found the cluster is joined before it hears from anyone. Seeds are
    // contact points, not founders: a seed that cannot reach the others (cluster DNS down) waits rather
    // than start a second ring, and a restarted member waits to hear from the ring it belonged to,
    // unless it was that ring alone.
    const knewOthers = known.some((e) => e.status !== 'removed');
    this.joined = opts.bootstrap === true || (opts.wasMember === true && !knewOthers);
  }

  /** True when this node may found a new cluster (see GossipOptions.bootstrap). */
  get mayBootstrap(): boolean {
    return this.opts.bootstrap === true;
  }

  /** Contacts the seeds once: resolves when one answered; rejects when every seed that answered is of another cluster. */
  async join(timeoutMs: number): Promise<void> {
    const mismatches: string[] = [];
    for (const address of this.opts.seeds.filter((a) => a !== this.opts.self.address)) {
      try {
        await this.exchange(seedPeer(address), timeoutMs);
        this.joined = true;
        return;
      } catch (err) {
        if (err instanceof RemovedMemberError) throw err;
        const message = (err as Error).message;
        if (/cluster/.test(message)) mismatches.push(`${address}: ${message}`);
        else this.opts.log.warn({ seed: address, err: message }, 'seed not reachable');
      }
    }
    if (mismatches.length > 0 && !this.joined) {
      throw new InvalidRequestError(
        'cluster_mismatch',
        `refusing to join: the seeds belong to another cluster than "${this.cluster}" (${mismatches.join('; ')})`,
      );
    }
  }

  /** True once this node has exchanged gossip with the cluster (or bootstraps it). */
  get hasJoined(): boolean {
    return this.joined;
  }

  start(): void {
    this.timer = setInterval(() => void this.round(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One gossip round: heartbeat, then exchange with a live member, sometimes an unreachable one or a seed. */
  async round(): Promise<void> {
    this.table.beat();
    const others = this.list.filter((m) => m.id !== this.self);
    const live = others.filter((m) => this.state(m.id) !== 'down');
    const down = others.filter((m) => this.state(m.id) === 'down');
    const targets: string[] = [];
    const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)];
    const peer = pick(live);
    if (peer) targets.push(peer.id);
    // Unreachable members are retried now and then so their return is noticed (Cassandra does the same).
    if (down.length > 0 && Math.random() < down.length / (live.length + 1)) targets.push(pick(down)!.id);
    const seeds = this.opts.seeds.filter((a) => a !== this.opts.self.address);
    if (seeds.length > 0 && (live.length === 0 || Math.random() < 0.1)) targets.push(seedPeer(pick(seeds)!));
    await Promise.allSettled(
      targets.map((t) =>
        this.exchange(t, this.opts.intervalMs * 2).then(
          () => {
            this.joined = true;
          },
          (err) => {
            if (err instanceof RemovedMemberError)
              this.opts.log.error({ err: err.message }, 'refusing to rejoin');
            else this.opts.log.debug({ peer: t, err: (err as Error).message }, 'gossip exchange failed');
          },
        ),
      ),
    );
  }

  /** Push-pull with one peer: send our digest, merge what it knows newer, push what we know newer. */
  private async exchange(peer: string, timeoutMs: number): Promise<void> {
    const syn: GossipMessage = { op: 'gossip.syn', cluster: this.cluster, digest: this.table.digest() };
    const reply = (await this.opts.request(peer, syn, timeoutMs)) as SynReply;
    checkCluster(this.cluster, reply.cluster);
    this.apply(reply.entries);
    if (this.opts.refuseIfRemoved && this.table.previousIncarnation?.status === 'removed') {
      throw new RemovedMemberError(this.self);
    }
    const entries = this.table.delta(reply.digest);
    if (entries.length > 0) {
      const push: GossipMessage = { op: 'gossip.push', cluster: this.cluster, entries };
      await this.opts.request(peer, push, timeoutMs);
    }
  }

  /** Answers a peer's gossip message. */
  handle(msg: GossipMessage): SynReply | { ok: true } {
    try {
      checkCluster(this.cluster, msg.cluster);
    } catch (err) {
      throw new InvalidRequestError('cluster_mismatch', (err as Error).message);
    }
    if (msg.op === 'gossip.push') {
      this.apply(msg.entries);
      return { ok: true };
    }
    return { cluster: this.cluster, entries: this.table.delta(msg.digest), digest: this.table.digest() };
  }

  /** Entries refused so far (unsigned, forged, or a removal of a member this node hears from). */
  refusedEntries = 0;
  private readonly refusalsLogged = new Set<string>();

  /** The entries this node may take: with signing on, each one its writer signed (see entry-signing.ts). */
  private admissible(entries: MemberEntry[]): MemberEntry[] {
    const signer = this.opts.signer;
    if (!signer) return entries;
    return entries.filter((e) => {
      // Our own current incarnation speaks for itself: the table ignores such entries anyway.
      if (e.id === this.self && e.generation >= this.table.self.generation) return true;
      // A removal of an earlier incarnation of ours is news we must take (it refuses a stale rejoin).
      const why = signer.refusal(e, (id) => id === this.self || this.state(id) === 'down');
      if (why === undefined) return true;
      this.refusedEntries++;
      const key = `${e.id}: ${why}`;
      if (!this.refusalsLogged.has(key) && this.refusalsLogged.size < 1000) {
        this.refusalsLogged.add(key);
        this.opts.log.warn({ member: e.id, why }, 'gossip: refusing a membership entry');
      }
      return false;
    });
  }

  private apply(entries: MemberEntry[]): void {
    const { changed } = this.table.merge(this.admissible(entries));
    if (changed.length === 0) return;
    const now = this.now();
    // A member's newer version is a heartbeat from it, however many hops the news took.
    for (const e of changed) if (e.id !== this.self) this.detector.heartbeat(e.id, now);
    this.rebuild();
    // Heartbeats bump versions every round; persist only when a member's place in the ring changed.
    // (filter, not some: every changed member's entry is recorded, not just the first that moved)
    if (changed.filter((e) => e.id !== this.self && this.placeChanged(e)).length > 0) this.persist();
  }

  /** Each member's entry as last persisted (heartbeats change only its version). */
  private readonly persisted = new Map<string, MemberEntry>();

  private placeChanged(e: MemberEntry): boolean {
    const last = this.persisted.get(e.id);
    this.persisted.set(e.id, e);
    return !(
      last &&
      last.generation === e.generation &&
      last.status === e.status &&
      last.address === e.address &&
      samePlace(last, e)
    );
  }

  private persist(): void {
    this.opts.onChange?.(this.table.members().filter((e) => e.id !== this.self));
  }

  /** Recomputes the member list, the serving ring and the pending ring from the table. */
  private rebuild(): void {
    const entries = this.table.members().filter((e) => e.status !== 'removed' && e.tokens.length > 0);
    // A token claimed twice (nodes that chose tokens at the same moment) stays with the smaller id, so
    // every node builds the same ring instead of failing to build one.
    const owner = new Map<string, string>();
    for (const e of entries) for (const t of e.tokens) if (!owner.has(t)) owner.set(t, e.id);
    const clashes = entries.filter((e) => e.tokens.some((t) => owner.get(t) !== e.id)).map((e) => e.id);
    if (clashes.length > 0)
      this.opts.log.error({ members: clashes }, 'members claim tokens another member holds');
    this.list = entries.map((e) => ({
      id: e.id,
      address: e.address,
      tokens: e.tokens.filter((t) => owner.get(t) === e.id),
      ...(e.rack ? { rack: e.rack } : {}),
      ...(e.http ? { http: e.http } : {}),
    }));
    // Members whose every token another holds have no place on the ring.
    const placed = this.list.filter((m) => m.tokens.length > 0);
    const status = (m: Member) => this.table.get(m.id)!.status;
    const serving = placed.filter((m) => status(m) !== 'joining');
    // Nodes that all start at once are all joining at first: the ring is theirs until one is up.
    // A new Ring object only when its members, tokens or racks changed (not on every heartbeat):
    // anti-entropy rebuilds its trees when the ring object changes.
    this.theRing = ringOf(serving.length > 0 ? serving : placed, this.theRing);
    const moving = entries.some((e) => e.status === 'joining' || e.status === 'leaving');
    const after = placed.filter((m) => status(m) !== 'leaving');
    this.thePendingRing = moving && after.length > 0 ? ringOf(after, this.thePendingRing) : undefined;
  }

  ring(): Ring {
    return this.theRing;
  }

  pendingRing(): Ring | undefined {
    return this.thePendingRing;
  }

  /** This node's gossiped status. */
  get status(): MemberStatus {
    return this.table.self.status;
  }

  /** A member's gossiped status (no failure-detector verdict), or undefined when unknown. */
  statusOf(id: string): MemberStatus | undefined {
    return this.table.get(id)?.status;
  }

  /** The entry an earlier incarnation of this node had, as peers told us (see GossipState). */
  get previousIncarnation(): MemberEntry | undefined {
    return this.table.previousIncarnation;
  }

  /** Replaces this node's tokens (a joining node that chose balanced ones); peers learn at the next round. */
  setTokens(tokens: string[]): void {
    this.table.updateSelf({ tokens });
    this.rebuild();
  }

  /** Changes this node's status (joining → up, up → leaving → removed) and tells peers at the next round. */
  setStatus(status: MemberStatus): void {
    this.table.updateSelf({ status });
    this.rebuild();
  }

  /**
   * Pushes this node's entry to every other member the detector does not hold down, now rather than
   * at gossip's pace; resolves with the members that did not take it. A move waits for this so every
   * coordinator sends writes to the new replicas before any data is streamed.
   */
  async announce(timeoutMs: number): Promise<string[]> {
    const push: GossipMessage = { op: 'gossip.push', cluster: this.cluster, entries: [this.table.self] };
    const others = this.list.filter((m) => m.id !== this.self && this.state(m.id) !== 'down');
    const results = await Promise.allSettled(others.map((m) => this.opts.request(m.id, push, timeoutMs)));
    return others.filter((_, i) => results[i]!.status === 'rejected').map((m) => m.id);
  }

  members(): readonly Member[] {
    return this.list;
  }

  address(id: string): string | undefined {
    if (id.startsWith('seed:')) return id.slice('seed:'.length);
    return this.table.get(id)?.address;
  }

  /** Gossiped status, with 'down' when the failure detector no longer hears a member. */
  state(id: string): MemberState {
    const entry = this.table.get(id);
    if (!entry) return 'removed';
    if (id !== this.self && entry.status !== 'removed' && !this.detector.isAvailable(id, this.now()))
      return 'down';
    return entry.status;
  }

  /** phi of every other member, for dynamo_member_phi. */
  phis(): Map<string, number> {
    const now = this.now();
    return new Map(
      this.list.filter((m) => m.id !== this.self).map((m) => [m.id, this.detector.phi(m.id, now)]),
    );
  }

  remove(id: string): void {
    if (id === this.self) throw new InvalidRequestError('cannot_remove_self', 'a node cannot remove itself');
    const state = this.state(id);
    if (state === 'removed') throw new InvalidRequestError('not_a_member', `${id} is not a member`);
    if (state !== 'down') {
      throw new InvalidRequestError(
        'member_not_down',
        `${id} is ${state}: only a member the failure detector holds down can be removed`,
      );
    }
    // The tombstone outranks the dead node's own entry everywhere gossip takes it.
    this.table.markRemoved(id);
    this.detector.remove(id);
    this.rebuild();
    this.opts.log.warn({ removed: id }, 'member removed from the cluster');
  }

  learnHttp(id: string, url: string): void {
    if (id === this.self) this.table.updateSelf({ http: url });
  }
}

/** The error a down member's requests fail with, without waiting for a timeout. */
export function markedDown(peer: string): PeerUnavailableError {
  return new PeerUnavailableError(peer, 'marked down by the failure detector');
}
