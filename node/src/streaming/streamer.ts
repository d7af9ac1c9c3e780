/**
 * Join and decommission of this node (gossip membership only): moves its token ranges in from, or out
 * to, the other replicas while the cluster keeps serving. Progress is kept in the node's database after
 * every page, so a node restarted mid-stream resumes where it stopped.
 *
 * Order of a move, so that no acknowledged write is missed:
 *  1. the node gossips its new status (joining / leaving) and pushes it to every live member directly;
 *  2. from then on coordinators also send writes to the replicas-to-be (Membership.pendingRing);
 *  3. after --ring-settle-ms (writes already routed by the old ring land), the data is streamed;
 *  4. only then does the node become up (join) or leave the ring (decommission).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { BucketPropsTable } from '../buckets/props.js';
import { ConflictError } from '../errors.js';
import type { Hint } from '../handoff/hint-queue.js';
import type { HintQueue } from '../handoff/index.js';
import type { GossipMembership } from '../membership/gossip.js';
import type { ReplicaRequest } from '../replica/messages.js';
import { allocateTokens } from '../ring/allocation.js';
import { generateTokens, hashKey, type Token } from '../ring/index.js';
import type { ObjectStore } from '../storage/store.js';
import {
  describeRing,
  type JoinMode,
  leaveTargets,
  leavingArcs,
  planJoinForAll,
  type RingDesc,
  ringFromDesc,
} from './plan.js';
import { STREAM_PAGE_BYTES } from './pull.js';
import {
  entryBytes,
  mergeEntries,
  type PullReply,
  type StreamEntry,
  type StreamRequest,
  scanPage,
} from './source.js';

/** The node's place in its lifecycle, as the admin API reports it. */
export type NodeState = 'joining' | 'up' | 'leaving' | 'left';

/** What this node is, kept in its database: its tokens and where it is in its lifecycle. */
export interface NodeRecord {
  tokens: Token[];
  state: NodeState;
}

export interface StreamPeerStatus {
  id: string;
  done: boolean;
  /** Bytes of the peer's (join) or this node's (decommission) objects scanned so far, and in all. */
  scanned: number;
  total: number;
}

export interface StreamStatus {
  kind: 'join' | 'decommission';
  mode: JoinMode | null;
  rangesTotal: number;
  rangesPending: number;
  keys: number;
  bytes: number;
  /** Bytes still to scan on the sending side: an upper bound of what is left to move. */
  bytesLeft: number;
  peers: StreamPeerStatus[];
  startedAt: string;
  finishedAt: string | null;
  /** The last error, while the stream retries it. */
  error: string | null;
}

interface PeerProgress {
  after: string | null;
  done: boolean;
  scanned: number;
  total: number;
}

interface StreamRecord {
  kind: 'join' | 'decommission';
  old: RingDesc;
  next: RingDesc;
  mode: JoinMode | null;
  /** Join: each range's sources. Decommission: the ranges handed over (all done when the scan is). */
  ranges: Array<[Token, string[]]>;
  peers: Record<string, PeerProgress>;
  keys: number;
  bytes: number;
  startedAt: number;
}

const RING_SIZE = 1n << 128n;
const RETRY_MS = 1000;
/** The metadata entry of the NodeRecord. */
export const NODE_RECORD = 'node';
const STREAM_RECORD = 'stream';

export async function loadNodeRecord(store: ObjectStore): Promise<NodeRecord | undefined> {
  const bytes = await store.getMeta(NODE_RECORD);
  return bytes && (JSON.parse(bytes.toString()) as NodeRecord);
}

export function saveNodeRecord(store: ObjectStore, record: NodeRecord): Promise<void> {
  return store.putMeta(NODE_RECORD, Buffer.from(JSON.stringify(record)));
}

export interface StreamerOptions {
  self: string;
  tokens: Token[];
  /**
   * Replace tokens by ones chosen to balance replica ownership when joining an existing ring (the node
   * was given none, and has never claimed any).
   */
  balanceTokens: boolean;
  gossipIntervalMs: number;
  store: ObjectStore;
  props: BucketPropsTable;
  gossip: GossipMembership;
  hints: HintQueue;
  request: (peer: string, req: StreamRequest | ReplicaRequest, timeoutMs: number) => Promise<unknown>;
  mergeLocal: (req: ReplicaRequest) => Promise<unknown>;
  defaultN: number;
  settleMs: number;
  /** Most bytes per second to stream; 0 for no limit. */
  bytesPerSecond: number;
  timeoutMs: number;
  log: Logger;
  onStreamed: (direction: 'in' | 'out', keys: number, bytes: number) => void;
}

/** A join restarts from a new plan when one of its sources is lost. */
class SourceLost extends Error {}

export class Streamer {
  private record: StreamRecord | undefined;
  private finished: { status: StreamStatus } | undefined;
  private error: string | null = null;
  private running: Promise<void> | undefined;
  private tokens: Token[];
  private stopped = false;
  /** Earliest time the next page may start, under the rate limit. */
  private nextPageAt = 0;

  constructor(private readonly opts: StreamerOptions) {
    this.tokens = opts.tokens;
  }

  /** Loads the progress of a stream a restart interrupted, so the status shows it from the start. */
  async load(): Promise<void> {
    const bytes = await this.opts.store.getMeta(STREAM_RECORD);
    if (bytes) {
      this.record = JSON.parse(bytes.toString()) as StreamRecord;
      this.durable = JSON.parse(bytes.toString()) as StreamRecord;
    }
  }

  /** Where this node is in its lifecycle. */
  get state(): NodeState {
    const status = this.opts.gossip.status;
    return status === 'removed' ? 'left' : status;
  }

  /** True when this node is up and no join is finishing (its announcement of being up has gone out). */
  get serving(): boolean {
    return this.state === 'up' && this.running === undefined;
  }

  /** True until a join has finished, its announcement of being up included. */
  get joining(): boolean {
    return this.state === 'joining' || this.joinRunning;
  }

  private joinRunning = false;
  /**
   * The running stream's record as last saved: the status shows only progress a restart keeps (the
   * record in memory runs a page ahead while it is being saved).
   */
  private durable: StreamRecord | undefined;

  /** The running (or last finished) stream's progress, or null when this node never streamed. */
  status(): StreamStatus | null {
    if (this.record) return this.describe(this.durable ?? this.record, null);
    return this.finished?.status ?? null;
  }

  rangesPending(): number {
    const s = this.status();
    return s && s.finishedAt === null ? s.rangesPending : 0;
  }

  /**
   * Brings a joining node into the ring: bootstraps at once when no other member serves yet, else
   * streams its ranges in. Resolves once the node is up; resumes a stream a restart interrupted.
   */
  join(): Promise<void> {
    return this.runOnce(async () => {
      this.joinRunning = true;
      try {
        await this.runJoin();
      } finally {
        this.joinRunning = false;
      }
    });
  }

  /** Starts the decommission of this node (idempotent); ConflictError when it cannot leave now. */
  decommission(force: boolean): void {
    const state = this.state;
    if (state === 'leaving' || state === 'left') return;
    if (state === 'joining')
      throw new ConflictError('not_joined', 'this node is still joining; decommission it once it is up');
    const { gossip, self } = this.opts;
    const n = Math.max(...this.replicationFactors());
    const others = gossip.members().filter((m) => m.id !== self);
    const moving = others.filter((m) => ['joining', 'leaving'].includes(gossip.statusOf(m.id) ?? ''));
    if (moving.length > 0) {
      throw new ConflictError(
        'move_in_progress',
        `${moving.map((m) => `${m.id} is ${gossip.statusOf(m.id)}`).join(', ')}: one join or leave at a time`,
      );
    }
    if (others.length === 0)
      throw new ConflictError('last_member', 'this is the only member: its data has nowhere to go');
    if (others.length < n && !force) {
      throw new ConflictError(
        'would_underreplicate',
        `${others.length} members would remain, fewer than the largest replication factor in use, n=${n}; add ?force=true to leave anyway`,
      );
    }
    // Leaving from now on, so the reply (and every later status) says so.
    gossip.setStatus('leaving');
    this.runOnce(() => this.runDecommission()).catch((err) =>
      this.opts.log.error({ err }, 'decommission failed'),
    );
  }

  /** Resumes a decommission a restart interrupted. */
  resume(): void {
    if (this.state === 'leaving') {
      this.runOnce(() => this.runDecommission()).catch((err) =>
        this.opts.log.error({ err }, 'decommission failed'),
      );
    }
  }

  /** Runs task unless a join or decommission is already running (then returns that one). */
  private runOnce(task: () => Promise<void>): Promise<void> {
    this.running ??= task().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Stops streaming (at the next page); progress stays saved for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running?.catch(() => undefined);
  }

  private async runJoin(): Promise<void> {
    const { gossip, store, self, log } = this.opts;
    await saveNodeRecord(store, { tokens: this.tokens, state: 'joining' });
    let record = await this.loadRecord('join');
    const serving = () =>
      gossip
        .members()
        .filter((m) => m.id !== self && ['up', 'leaving'].includes(gossip.statusOf(m.id) ?? ''));
    if (!record && serving().length === 0 && gossip.mayBootstrap) {
      log.info('no other member serves: founding a new cluster (--bootstrap)');
    } else {
      // Nodes that start with a new cluster join once its founder is up.
      if (!record && serving().length === 0) log.info('join: waiting for a member that serves');
      while (!record && serving().length === 0) {
        if (this.stopped) throw new Error('stopped');
        await sleep(this.opts.gossipIntervalMs);
      }
      if (!record) {
        if (this.opts.balanceTokens) await this.chooseBalancedTokens();
        await this.announceAndSettle();
        record = this.planJoin();
        await this.save(record);
      }
      log.info({ sources: Object.keys(record.peers), mode: record.mode }, 'join: streaming ranges in');
      for (;;) {
        try {
          await Promise.all(Object.keys(record.peers).map((peer) => this.pullFrom(peer, record!)));
          break;
        } catch (err) {
          if (!(err instanceof SourceLost) || this.stopped) throw err;
          log.warn(
            { err: err.message },
            'join: a source was lost, streaming again from the replicas that are up',
          );
          record = this.planJoin();
          await this.save(record);
        }
      }
      this.finish(record);
    }
    gossip.setStatus('up');
    await saveNodeRecord(store, { tokens: this.tokens, state: 'up' });
    await store.delMeta(STREAM_RECORD);
    await gossip.announce(this.opts.timeoutMs);
    log.info({ keys: record?.keys ?? 0, bytes: record?.bytes ?? 0 }, 'join: this node is up');
  }

  /**
   * Claims tokens that even out replica ownership, given every other member's (Cassandra's
   * allocate_tokens_for_local_replication_factor). Nodes joining at once take turns by id, so no two
   * choose against the same ring and pick the same tokens.
   */
  private async chooseBalancedTokens(): Promise<void> {
    const { gossip, self, defaultN, store, log } = this.opts;
    // Two gossip rounds to hear of nodes that started joining at the same moment.
    await sleep(2 * this.opts.gossipIntervalMs);
    const earlier = () =>
      gossip
        .members()
        .filter((m) => m.id < self && gossip.statusOf(m.id) === 'joining' && gossip.state(m.id) !== 'down');
    while (earlier().length > 0) {
      if (this.stopped) throw new Error('stopped');
      await sleep(this.opts.gossipIntervalMs);
    }
    // A node rejoining under its id after losing its data takes back the tokens it had.
    const previous = gossip.previousIncarnation;
    if (previous && previous.status !== 'removed' && previous.tokens.length > 0) {
      this.tokens = [...previous.tokens];
      gossip.setTokens(this.tokens);
      await saveNodeRecord(store, { tokens: this.tokens, state: 'joining' });
      log.info({ tokens: this.tokens.length }, 'join: rejoining with the tokens this node had before');
      return;
    }
    const existing = gossip
      .members()
      .filter((m) => m.id !== self)
      .map((m) => ({ id: m.id, tokens: [...m.tokens] }));
    // Nudged by an offset of this node's own (< 2^-64 of the ring: no effect on balance), so two nodes
    // that still chose against the same ring cannot claim the very same tokens.
    const offset = BigInt(`0x${generateTokens(self, 1)[0]!.slice(0, 16)}`);
    this.tokens = allocateTokens({ existing, newNode: self, tokens: this.tokens.length, n: defaultN }).map(
      (t) => ((BigInt(`0x${t}`) + offset) % RING_SIZE).toString(16).padStart(32, '0'),
    );
    gossip.setTokens(this.tokens);
    await saveNodeRecord(store, { tokens: this.tokens, state: 'joining' });
    log.info({ tokens: this.tokens.length }, 'join: claimed tokens that balance replica ownership');
  }

  /** Every replication factor in use: the default and each bucket's n. */
  private replicationFactors(): number[] {
    return [this.opts.defaultN, ...this.opts.props.all().map((p) => p.props.n)];
  }

  private planJoin(): StreamRecord {
    const { gossip, self } = this.opts;
    const old = gossip.ring();
    const next = gossip.pendingRing() ?? old;
    // A node that held these ranges before (rejoining under its id after losing its data) rebuilds
    // them from every replica: the nodes that stood in for it never had all of it.
    const previous = gossip.previousIncarnation;
    const rebuilding = previous !== undefined && previous.status !== 'removed';
    const isUp = (id: string) => id !== self && !['down', 'removed'].includes(gossip.state(id));
    const plan = planJoinForAll(old, next, self, this.replicationFactors(), isUp, rebuilding);
    const peers: Record<string, PeerProgress> = {};
    for (const id of plan.sources) peers[id] = { after: null, done: false, scanned: 0, total: 0 };
    return {
      kind: 'join',
      old: describeRing(old),
      next: describeRing(next),
      mode: plan.mode,
      ranges: [...plan.ranges],
      peers,
      keys: 0,
      bytes: 0,
      startedAt: Date.now(),
    };
  }

  /** Pulls pages from one source until it has sent all it has for this node. */
  private async pullFrom(source: string, record: StreamRecord): Promise<void> {
    const { gossip, self, props, timeoutMs } = this.opts;
    const progress = record.peers[source]!;
    while (!progress.done && this.record === record) {
      if (this.stopped) throw new Error('stopped');
      const req: StreamRequest = {
        op: 'stream.pull',
        target: self,
        old: record.old,
        next: record.next,
        mode: record.mode ?? 'all',
        after: progress.after,
        maxBytes: STREAM_PAGE_BYTES,
      };
      let reply: PullReply;
      try {
        reply = (await this.opts.request(source, req, timeoutMs)) as PullReply;
      } catch (err) {
        if (['down', 'removed'].includes(gossip.state(source))) throw new SourceLost(`${source} is down`);
        this.error = `pulling from ${source}: ${(err as Error).message}`;
        await sleep(RETRY_MS);
        continue;
      }
      await mergeEntries(reply.entries, props, this.opts.mergeLocal);
      const bytes = entryBytes(reply.entries);
      if (this.record !== record) return;
      this.error = null;
      progress.after = reply.next;
      progress.done = reply.next === null;
      progress.scanned += reply.scanned;
      progress.total = Math.max(reply.total, progress.scanned);
      record.keys += reply.entries.length;
      record.bytes += bytes;
      this.opts.onStreamed('in', reply.entries.length, bytes);
      await this.save(record);
      await this.throttle(bytes);
    }
  }

  private async runDecommission(): Promise<void> {
    const { gossip, store, log } = this.opts;
    let record = await this.loadRecord('decommission');
    if (!record) {
      if (gossip.status !== 'leaving') gossip.setStatus('leaving');
      await saveNodeRecord(store, { tokens: this.tokens, state: 'leaving' });
      await this.announceAndSettle();
      const old = gossip.ring();
      const next = gossip.pendingRing();
      if (!next) throw new Error('decommission: no ring remains without this node');
      record = {
        kind: 'decommission',
        old: describeRing(old),
        next: describeRing(next),
        mode: null,
        ranges: leavingArcs(old, this.opts.self, Math.max(...this.replicationFactors())).map((t) => [
          t,
          [this.opts.self],
        ]),
        peers: {
          [this.opts.self]: { after: null, done: false, scanned: 0, total: await store.approximateBytes() },
        },
        keys: 0,
        bytes: 0,
        startedAt: Date.now(),
      };
      await this.save(record);
    }
    log.info({ ranges: record.ranges.length }, 'decommission: streaming ranges out');
    await this.pushAll(record);
    await this.handOffHints(ringFromDesc(record.next).members.map((m) => m.id));
    this.finish(record);
    gossip.setStatus('removed');
    await saveNodeRecord(store, { tokens: this.tokens, state: 'left' });
    await store.delMeta(STREAM_RECORD);
    await gossip.announce(this.opts.timeoutMs);
    log.info(
      { keys: record.keys, bytes: record.bytes },
      'decommission: data handed over, this node has left',
    );
  }

  /** Scans this node's objects page by page and sends each to its replicas-to-be. */
  private async pushAll(record: StreamRecord): Promise<void> {
    const { store, props, self } = this.opts;
    const old = ringFromDesc(record.old);
    const next = ringFromDesc(record.next);
    const progress = record.peers[self]!;
    while (!progress.done) {
      if (this.stopped) throw new Error('stopped');
      const batches = new Map<string, StreamEntry[]>();
      const page = await scanPage(store, progress.after, STREAM_PAGE_BYTES, (b, k, obj) => {
        const targets = leaveTargets(old, next, hashKey(b, k), props.get(b).n);
        for (const target of targets) {
          const batch = batches.get(target) ?? [];
          if (batch.length === 0) batches.set(target, batch);
          batch.push([b, k, obj]);
        }
        return obj.length * targets.length;
      });
      await Promise.all([...batches].map(([target, entries]) => this.pushTo(target, entries)));
      progress.after = page.next;
      progress.done = page.next === null;
      progress.scanned += page.scanned;
      progress.total = Math.max(progress.total, progress.scanned);
      let bytes = 0;
      for (const entries of batches.values()) {
        const sent = entryBytes(entries);
        record.keys += entries.length;
        record.bytes += sent;
        bytes += sent;
        this.opts.onStreamed('out', entries.length, sent);
      }
      await this.save(record);
      await this.throttle(bytes);
    }
  }

  /** Sends a page to one target, retrying until it takes it (a decommission waits for every target). */
  private async pushTo(target: string, entries: StreamEntry[]): Promise<void> {
    for (;;) {
      if (this.stopped) throw new Error('stopped');
      try {
        await this.opts.request(target, { op: 'stream.push', entries }, this.opts.timeoutMs);
        this.error = null;
        return;
      } catch (err) {
        this.error = `pushing to ${target}: ${(err as Error).message}`;
        await sleep(RETRY_MS);
      }
    }
  }

  /**
   * Hands over the hints this node holds: delivered to targets that are up, else stored as hints on a
   * remaining member; hints for members removed since go to the key's replicas.
   */
  private async handOffHints(remaining: string[]): Promise<void> {
    const { hints, gossip, self, timeoutMs, props } = this.opts;
    const live = (id: string) => id !== self && !['down', 'removed'].includes(gossip.state(id));
    const send = async (target: string, hint: Hint): Promise<void> => {
      const lww = props.get(hint.bucket).conflict === 'lww';
      const merge: ReplicaRequest = { op: 'merge', b: hint.bucket, k: hint.key, obj: hint.obj, lww };
      if (live(target)) {
        await this.opts.request(target, merge, timeoutMs);
      } else if (gossip.state(target) === 'removed') {
        const pref = gossip.ring().preferenceList(hashKey(hint.bucket, hint.key), props.get(hint.bucket).n);
        await Promise.all(pref.filter(live).map((id) => this.opts.request(id, merge, timeoutMs)));
      } else {
        const keeper = remaining.find((id) => id !== target && live(id));
        if (!keeper) throw new Error(`no live member can keep the hints for ${target}`);
        const { bucket: b, key: k, obj } = hint;
        await this.opts.request(keeper, { op: 'hint.store', target, b, k, obj }, timeoutMs);
      }
    };
    // Until every stored hint is counted, pending() could miss a target: none may be left behind.
    await hints.loaded();
    for (;;) {
      const pending = [...hints.pending()].filter(([, n]) => n > 0).map(([target]) => target);
      if (pending.length === 0) return;
      if (this.stopped) throw new Error('stopped');
      await Promise.all(pending.map((target) => hints.deliver(target, (hint) => send(target, hint))));
      if ([...hints.pending().values()].some((n) => n > 0)) await sleep(RETRY_MS);
    }
  }

  /** Waits as long as moving bytes takes at the configured rate (shared by all of this node's streams). */
  private async throttle(bytes: number): Promise<void> {
    const rate = this.opts.bytesPerSecond;
    if (rate <= 0) return;
    const now = Date.now();
    this.nextPageAt = Math.max(now, this.nextPageAt) + (bytes * 1000) / rate;
    if (this.nextPageAt > now) await sleep(this.nextPageAt - now);
  }

  /** Tells every live member now and waits out the settle time (see the header). */
  private async announceAndSettle(): Promise<void> {
    const { gossip, timeoutMs, settleMs, log } = this.opts;
    for (let attempt = 1; ; attempt++) {
      const missed = await gossip.announce(timeoutMs);
      if (missed.length === 0) break;
      this.error = `members not yet told of this move: ${missed.join(', ')}`;
      log.warn({ missed, attempt }, 'move: some members did not take the announcement; retrying');
      if (this.stopped) throw new Error('stopped');
      await sleep(RETRY_MS);
    }
    this.error = null;
    await sleep(settleMs);
  }

  private async loadRecord(kind: StreamRecord['kind']): Promise<StreamRecord | undefined> {
    await this.load();
    if (this.record?.kind === kind) return this.record;
    this.record = undefined;
    this.durable = undefined;
    return undefined;
  }

  private async save(record: StreamRecord): Promise<void> {
    this.record = record;
    const text = JSON.stringify(record);
    await this.opts.store.putMeta(STREAM_RECORD, Buffer.from(text));
    if (this.record === record) this.durable = JSON.parse(text) as StreamRecord;
  }

  private finish(record: StreamRecord): void {
    this.finished = { status: this.describe(record, Date.now()) };
    this.record = undefined;
    this.durable = undefined;
  }

  private describe(record: StreamRecord, finishedAt: number | null): StreamStatus {
    const peers = Object.entries(record.peers).map(([id, p]) => ({
      id,
      done: p.done,
      scanned: p.scanned,
      total: p.total,
    }));
    const done = new Set(peers.filter((p) => p.done).map((p) => p.id));
    const rangesPending = record.ranges.filter(([, sources]) => !sources.every((s) => done.has(s))).length;
    return {
      kind: record.kind,
      mode: record.mode,
      rangesTotal: record.ranges.length,
      rangesPending,
      keys: record.keys,
      bytes: record.bytes,
      bytesLeft: peers.reduce((sum, p) => sum + (p.done ? 0 : Math.max(0, p.total - p.scanned)), 0),
      peers,
      startedAt: new Date(record.startedAt).toISOString(),
      finishedAt: finishedAt === null ? null : new Date(finishedAt).toISOString(),
      error: this.error,
    };
  }
}
