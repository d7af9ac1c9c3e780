/**
 * The replica side of every object operation: applies coordinated writes and merges to the local
 * store with the dvvset rules, and answers reads. One instance per node, behind the transport.
 */
import type { BucketPropsTable } from '../buckets/props.js';
import { InvalidRequestError, TooManySiblingsError } from '../errors.js';
import { decodeObject, encodeObject } from '../storage/codec.js';
import type { ObjectStore } from '../storage/store.js';
import {
  ActorMint,
  bindCollided,
  type Clock,
  distinctValues,
  isLive,
  lww,
  prune,
  purgeExpired,
  type Sibling,
  type SyncStats,
  sameVersion,
  sync,
  update,
  type VersionVector,
  values,
  withContext,
} from '../version/index.js';
import type { GetReply, PutReply, ReapReply, ReplicaRequest } from './messages.js';

export interface ReplicaOptions {
  self: string;
  /** Most live siblings a coordinated client write may leave. */
  maxSiblings: number;
  /** Stores a hint durably (sloppy quorum: this node stands in for a replica that is down). */
  storeHint?: (hint: { target: string; bucket: string; key: string; obj: Buffer }) => Promise<void>;
  /** Called when a write is refused for the sibling limit. */
  onSiblingLimit?: () => void;
  /** Called when a merge met a dot naming two different values (both were kept as siblings). */
  onDotCollision?: (bucket: string, key: string, collisions: number) => void;
  /** Mints the actor ids of the writes this node coordinates (default: a new incarnation of self). */
  actors?: ActorMint;
  clockMaxEntries: number;
  clockPruneAgeMs: number;
  now?: () => number;
}

export class Replica {
  private readonly now: () => number;
  readonly actors: ActorMint;

  constructor(
    private readonly store: ObjectStore,
    private readonly props: BucketPropsTable,
    private readonly opts: ReplicaOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.actors = opts.actors ?? new ActorMint(opts.self);
    // Any local delete (reaping, cleanup) may later meet an older copy of the key: retire the actors.
    store.onWrite((_b, _k, before, after) => {
      if (after === undefined && before) this.actors.retire(before);
    });
  }

  /** Applies a client write as a new dot on local (undefined: no local copy), refusing too many siblings. */
  private coordinate(
    req: { ctx: VersionVector; sib: Sibling; lww: boolean },
    local: Clock | undefined,
  ): Clock {
    const actor = this.actors.actorFor(local);
    const next = this.bound(update(withContext(req.ctx, req.sib), local, actor, this.now()), req.lww);
    const live = distinctValues(next).filter((s) => isLive(s, this.now())).length;
    if (live > this.opts.maxSiblings) {
      this.opts.onSiblingLimit?.();
      throw new TooManySiblingsError(live, this.opts.maxSiblings);
    }
    return next;
  }

  /** Handles one request (from a peer, or from this node's own coordinator). */
  async handle(req: ReplicaRequest): Promise<unknown> {
    switch (req.op) {
      case 'get':
        return { obj: this.store.getRaw(req.b, req.k) ?? null } satisfies GetReply;
      case 'put': {
        const stored = await this.store.modify(req.b, req.k, (local) => this.coordinate(req, local));
        return { obj: encodeObject(stored) } satisfies PutReply;
      }
      case 'merge': {
        const incoming = decodeObject(req.obj);
        await this.store.modify(req.b, req.k, (local) => {
          if (!local) return this.bound(incoming, req.lww);
          const stats: SyncStats = { collided: [] };
          let merged = sync(local, incoming, stats);
          if (stats.collided.length > 0) {
            this.opts.onDotCollision?.(req.b, req.k, stats.collided.length);
            merged = bindCollided(merged, stats.collided, () => this.actors.actorFor(undefined), this.now());
          }
          merged = this.bound(merged, req.lww);
          return sameVersion(local, merged) ? local : merged;
        });
        return { ok: true };
      }
      case 'put.hint': {
        if (!this.opts.storeHint) throw new InvalidRequestError('no_hints', 'this node keeps no hints');
        // A stand-in holds no copy of the key: the write gets an actor of its own (actors.ts), so two
        // writes through one stand-in are two dots, and both survive as siblings at the replicas.
        const next = this.coordinate(req, undefined);
        const obj = encodeObject(next);
        await this.opts.storeHint({ target: req.target, bucket: req.b, key: req.k, obj });
        return { obj } satisfies PutReply;
      }
      case 'hint.store':
        if (!this.opts.storeHint) throw new InvalidRequestError('no_hints', 'this node keeps no hints');
        await this.opts.storeHint({ target: req.target, bucket: req.b, key: req.k, obj: req.obj });
        return { ok: true };
      case 'reap': {
        const agreed = decodeObject(req.obj);
        const outcome = await this.store.deleteUnless(
          req.b,
          req.k,
          (current) => !sameVersion(current, agreed) || values(current).some((s) => isLive(s, this.now())),
        );
        // Absent counts as reaped: an earlier reap (whose answer was lost) already removed it.
        return { reaped: outcome !== 'kept' } satisfies ReapReply;
      }
      case 'props.set':
        await this.props.merge(req.props);
        return { ok: true };
      case 'props.all':
        return { props: this.props.all() };
      default:
        throw new InvalidRequestError('unknown_op', `unknown replica op ${(req as { op: string }).op}`);
    }
  }

  /** Applies the bucket's conflict mode, purges expired values and bounds the clock size. */
  private bound(c: Clock, lastWriterWins: boolean): Clock {
    const now = this.now();
    const resolved = purgeExpired(lastWriterWins ? lww(c) : c, now);
    return prune(resolved, {
      maxEntries: this.opts.clockMaxEntries,
      minAgeMs: this.opts.clockPruneAgeMs,
      now,
      keep: (id) => this.actors.isActive(id),
    });
  }
}
