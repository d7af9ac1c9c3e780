/**
 * The replica side of every object operation: applies coordinated writes and merges to the local
 * store with the dvvset rules, and answers reads. One instance per node, behind the transport.
 */
import type { BucketPropsTable } from '../buckets/props.js';
import { InvalidRequestError, TooManySiblingsError } from '../errors.js';
import { decodeObject, encodeObject } from '../storage/codec.js';
import type { ObjectStore } from '../storage/store.js';
import {
  type Clock,
  isLive,
  lww,
  prune,
  purgeExpired,
  sameVersion,
  sync,
  update,
  values,
  withContext,
} from '../version/index.js';
import type { GetReply, PutReply, ReplicaRequest } from './messages.js';

export interface ReplicaOptions {
  self: string;
  /** Most live siblings a coordinated client write may leave. */
  maxSiblings: number;
  /** Stores a hint durably (sloppy quorum: this node stands in for a replica that is down). */
  storeHint?: (hint: { target: string; bucket: string; key: string; obj: Buffer }) => Promise<void>;
  /** Called when a write is refused for the sibling limit. */
  onSiblingLimit?: () => void;
  clockMaxEntries: number;
  clockPruneAgeMs: number;
  now?: () => number;
}

export class Replica {
  private readonly now: () => number;

  constructor(
    private readonly store: ObjectStore,
    private readonly props: BucketPropsTable,
    private readonly opts: ReplicaOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Handles one request (from a peer, or from this node's own coordinator). */
  async handle(req: ReplicaRequest): Promise<unknown> {
    switch (req.op) {
      case 'get':
        return { obj: this.store.getRaw(req.b, req.k) ?? null } satisfies GetReply;
      case 'put': {
        const stored = await this.store.modify(req.b, req.k, (local) => {
          const next = this.bound(
            update(withContext(req.ctx, req.sib), local, this.opts.self, this.now()),
            req.lww,
          );
          const live = values(next).filter((s) => isLive(s, this.now())).length;
          if (live > this.opts.maxSiblings) {
            this.opts.onSiblingLimit?.();
            throw new TooManySiblingsError(live, this.opts.maxSiblings);
          }
          return next;
        });
        return { obj: encodeObject(stored) } satisfies PutReply;
      }
      case 'merge': {
        const incoming = decodeObject(req.obj);
        await this.store.modify(req.b, req.k, (local) => {
          if (!local) return this.bound(incoming, req.lww);
          const merged = this.bound(sync(local, incoming), req.lww);
          return sameVersion(local, merged) ? local : merged;
        });
        return { ok: true };
      }
      case 'put.hint': {
        if (!this.opts.storeHint) throw new InvalidRequestError('no_hints', 'this node keeps no hints');
        const next = this.bound(
          update(withContext(req.ctx, req.sib), undefined, this.opts.self, this.now()),
          req.lww,
        );
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
        const reaped = await this.store.deleteUnless(
          req.b,
          req.k,
          (current) => !sameVersion(current, agreed) || values(current).some((s) => isLive(s, this.now())),
        );
        return { reaped };
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
    });
  }
}
