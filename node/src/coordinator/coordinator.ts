/**
 * Coordinates client requests: finds the key's preference list, sends to its replicas, returns after
 * R reads or W writes, finishes the rest in the background and repairs stale replicas seen by a read.
 */
import type { Logger } from 'pino';
import type { BucketPropsTable } from '../buckets/props.js';
import {
  outcomeUnknown,
  QuorumNotMetError,
  RemoteError,
  TooManySiblingsError,
  WriteOutcomeUnknownError,
} from '../errors.js';
import type { Membership } from '../membership/membership.js';
import type { GetReply, PutReply, ReplicaRequest } from '../replica/messages.js';
import { hashKey } from '../ring/index.js';
import { InFlight } from '../runtime/in-flight.js';
import { decodeObject, encodeObject } from '../storage/codec.js';
import { type Clock, lww, type Sibling, syncAll, type VersionVector } from '../version/index.js';
import { awaitQuorum } from './quorum.js';
import { staleReplicas } from './read-repair.js';

/** Sends a request to a replica (this node's own replica is called directly). */
export type ReplicaCall = (peer: string, req: ReplicaRequest, timeoutMs: number) => Promise<unknown>;

export interface CoordinatorDeps {
  membership: Membership;
  props: BucketPropsTable;
  call: ReplicaCall;
  log: Logger;
  /** Called with the number of replicas a read repaired. */
  onReadRepair?: (replicas: number) => void;
  /**
   * Called for each replica of the key that did not take a write (down, refused or timed out), with the
   * object it should receive: hinted handoff delivers it when the replica is back.
   */
  onReplicaMissed?: (peer: string, bucket: string, key: string, obj: Buffer) => Promise<void> | void;
}

export interface ReadOptions {
  r: number;
  timeoutMs: number;
  rid?: string;
}

export interface WriteOptions {
  w: number;
  timeoutMs: number;
  /** The causal context the client read; empty when it has none. */
  context: VersionVector;
  /**
   * Only the key's true replicas count towards w (Riak's pw). Otherwise (sloppy quorum) a replica that
   * refuses is stood in for by the next healthy node clockwise, which keeps the write as a hint and counts.
   */
  strict?: boolean;
  rid?: string;
}

export class Coordinator {
  /** Replica calls, hints and repairs still running for requests already answered. */
  private readonly background = new InFlight();

  constructor(private readonly deps: CoordinatorDeps) {}

  /** Counts p as background work until it settles (drain waits for it). */
  private track<T>(p: Promise<T>): Promise<T> {
    return this.background.track(p);
  }

  /**
   * Waits (up to timeoutMs) for the replica calls, hint writes and read repairs of requests already
   * answered: a graceful shutdown calls it before closing the database, so no acknowledged write loses
   * its hint. Resolves with the number still running at the deadline.
   */
  drain(timeoutMs: number): Promise<number> {
    return this.background.drained(timeoutMs);
  }

  /** Replicas of a key for its bucket's n, in preference order. */
  preferenceList(bucket: string, key: string): string[] {
    const { n } = this.deps.props.get(bucket);
    return this.deps.membership.ring().preferenceList(hashKey(bucket, key), n);
  }

  /** Reads a key from R replicas; undefined when none of them has it. */
  async get(bucket: string, key: string, opts: ReadOptions): Promise<Clock | undefined> {
    const props = this.deps.props.get(bucket);
    const pref = this.preferenceList(bucket, key);
    const req: ReplicaRequest = { op: 'get', b: bucket, k: key, rid: opts.rid };
    const calls = pref.map((peer): [string, Promise<Clock | undefined>] => [
      peer,
      this.deps.call(peer, req, opts.timeoutMs).then((reply) => {
        const { obj } = reply as GetReply;
        return obj ? decodeObject(obj) : undefined;
      }),
    ]);
    const wait = awaitQuorum('get', calls, opts.r);
    const replies = await wait.quorum;
    this.background.begin();
    void wait.settled.then((all) => {
      this.repair(bucket, key, all.ok, props.conflict === 'lww', opts);
      this.background.end(); // after repair tracked its calls, so a drain never sees 0 in between
    });
    return this.resolve(
      replies.ok.map((r) => r.value),
      props.conflict === 'lww',
    );
  }

  /**
   * Writes a new value (or tombstone) superseding the context; resolves with the stored object after W
   * acks. Each attempt to have a replica (or a stand-in) coordinate the write gets the whole timeout, so
   * an attempt after a hung replica is not starved. An attempt that timed out may still have applied the
   * write; the next one then stores it again under another dot, with the same bytes and timestamp, which
   * a read shows once (distinctValues).
   */
  async put(bucket: string, key: string, sibling: Sibling, opts: WriteOptions): Promise<Clock> {
    const props = this.deps.props.get(bucket);
    const isLww = props.conflict === 'lww';
    const pref = this.preferenceList(bucket, key);
    const self = this.deps.membership.self;
    // This node coordinates the write itself when it is a replica: saves a hop.
    const order = pref.includes(self) ? [self, ...pref.filter((p) => p !== self)] : pref;
    const budget = opts.timeoutMs;
    const reasons: string[] = [];
    let first: { peer: string; reply: PutReply } | undefined;
    const put = { b: bucket, k: key, ctx: opts.context, sib: sibling, lww: isLww, rid: opts.rid };
    for (const peer of order) {
      const req: ReplicaRequest = { op: 'put', ...put };
      try {
        first = { peer, reply: (await this.deps.call(peer, req, budget)) as PutReply };
        break;
      } catch (err) {
        // The write itself is refused: another replica would refuse it too.
        if (err instanceof TooManySiblingsError) throw err;
        if (err instanceof RemoteError && err.code === 'too_many_siblings') {
          throw new TooManySiblingsError(Number(err.details.siblings), Number(err.details.limit));
        }
        reasons.push((err as Error).message);
        this.deps.log.debug({ peer, err: (err as Error).message, rid: opts.rid }, 'put coordination failed');
        // It may still apply the write, later, under a dot of its own: a retry elsewhere would store it
        // twice, and the late copy would survive a delete of the first (no context covers it). The
        // write's outcome is unknown: say so (the client may read and write again).
        if (outcomeUnknown(err)) throw new WriteOutcomeUnknownError(peer, reasons);
      }
    }
    const standIns = opts.strict ? [] : this.substitutes(bucket, key, pref);
    // No replica reachable (say, all across a partition): a stand-in coordinates it as a hint for the
    // first replica, as Dynamo's sloppy quorum does, so this side of the partition stays writable.
    let hintedFor: string | undefined;
    for (let sub = first ? undefined : standIns.shift(); sub !== undefined; sub = standIns.shift()) {
      const req: ReplicaRequest = { op: 'put.hint', target: pref[0]!, ...put };
      try {
        first = { peer: sub, reply: (await this.deps.call(sub, req, budget)) as PutReply };
        hintedFor = pref[0];
        break;
      } catch (err) {
        reasons.push((err as Error).message);
        if (outcomeUnknown(err)) throw new WriteOutcomeUnknownError(sub, reasons);
      }
    }
    if (!first) throw new QuorumNotMetError('put', opts.w, 0, reasons);
    const obj = first.reply.obj;
    const merge: ReplicaRequest = { op: 'merge', b: bucket, k: key, obj, lww: isLww, rid: opts.rid };
    const missed = (peer: string) => {
      const stored = this.deps.onReplicaMissed?.(peer, bucket, key, obj);
      if (stored instanceof Promise) this.track(stored);
    };
    // Replicas tried before the one that coordinated the write did not take it.
    const tried = hintedFor ? order : order.slice(0, order.indexOf(first.peer));
    for (const peer of tried) if (peer !== hintedFor) missed(peer);
    const others = pref.filter((p) => p !== first.peer && p !== hintedFor);
    /** Asks the next unused substitute to keep the write as a hint for peer; rejects when none will. */
    const standIn = async (peer: string): Promise<unknown> => {
      for (let sub = standIns.shift(); sub !== undefined; sub = standIns.shift()) {
        const hint: ReplicaRequest = {
          op: 'hint.store',
          target: peer,
          b: bucket,
          k: key,
          obj,
          rid: opts.rid,
        };
        try {
          return await this.deps.call(sub, hint, budget);
        } catch {
          // try the next one
        }
      }
      throw new Error(`no substitute took the write for ${peer}`);
    };
    const calls = others.map((peer): [string, Promise<unknown>] => [
      peer,
      this.track(
        this.deps.call(peer, merge, budget).catch(async (err: Error) => {
          if (!opts.strict) {
            try {
              return await standIn(peer);
            } catch {
              // no substitute: this node keeps the hint, and the replica does not count
            }
          }
          // A timed-out replica may have applied the merge; a hint is harmless then (merging is idempotent).
          missed(peer);
          throw err;
        }),
      ),
    ]);
    // Replicas-to-be of a join or leave under way take the write too; they do not count towards w, and
    // one that misses it gets a hint, so the move ends with every acknowledged write in place.
    const pending = this.deps.membership.pendingRing();
    if (pending) {
      for (const peer of pending.preferenceList(hashKey(bucket, key), props.n)) {
        if (!pref.includes(peer)) this.track(this.deps.call(peer, merge, budget).catch(() => missed(peer)));
      }
    }
    try {
      await awaitQuorum('put', calls, opts.w - 1).quorum;
    } catch (err) {
      if (err instanceof QuorumNotMetError)
        throw new QuorumNotMetError('put', opts.w, err.got + 1, err.reasons);
      throw err;
    }
    return decodeObject(first.reply.obj);
  }

  /** Nodes after the preference list, clockwise, that are not down: stand-ins for a sloppy quorum. */
  private substitutes(bucket: string, key: string, pref: string[]): string[] {
    const ring = this.deps.membership.ring();
    return ring
      .preferenceList(hashKey(bucket, key), ring.size)
      .filter((id) => !pref.includes(id) && this.deps.membership.state(id) !== 'down');
  }

  private resolve(clocks: Array<Clock | undefined>, isLww: boolean): Clock | undefined {
    const merged = syncAll(clocks.filter((c): c is Clock => c !== undefined));
    return merged && isLww ? lww(merged) : merged;
  }

  /** Sends the merged object to every replica whose copy the read found behind. */
  private repair(
    bucket: string,
    key: string,
    replies: Array<{ peer: string; value: Clock | undefined }>,
    isLww: boolean,
    opts: ReadOptions,
  ): void {
    const merged = this.resolve(
      replies.map((r) => r.value),
      isLww,
    );
    const stale = staleReplicas(replies, merged);
    if (!merged || stale.length === 0) return;
    const obj = encodeObject(merged);
    for (const peer of stale) {
      const req: ReplicaRequest = { op: 'merge', b: bucket, k: key, obj, lww: isLww, rid: opts.rid };
      this.track(
        this.deps.call(peer, req, opts.timeoutMs).then(
          () => this.deps.onReadRepair?.(1),
          (err: Error) =>
            this.deps.log.debug({ peer, err: err.message, rid: opts.rid }, 'read repair failed'),
        ),
      );
    }
  }
}
