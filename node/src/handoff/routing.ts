/**
 * Where a hint goes and when it may be dropped: the one owner of "no last copy of a write is deleted".
 * A hint is delivered to its target while the target is a member; once the target has left the ring
 * (removed, or decommissioned) it is delivered to the key's current replicas instead. A hint past the
 * hint window may be dropped only when it is redundant: some current true replica of its key already
 * holds everything it carries (version/dvvset.ts covers). Otherwise it may be the last copy of an
 * acknowledged write, and it is kept and delivered however old it is.
 */
import type { BucketPropsTable } from '../buckets/props.js';
import type { Membership } from '../membership/membership.js';
import type { GetReply, ReplicaRequest } from '../replica/messages.js';
import { hashKey } from '../ring/index.js';
import { decodeObject } from '../storage/codec.js';
import { covers } from '../version/index.js';
import type { Hint } from './hint-queue.js';

export interface HintRouterDeps {
  self: string;
  membership: Membership;
  props: BucketPropsTable;
  /** Sends a replica request to a node (this node's own replica when peer is self). */
  call: (peer: string, req: ReplicaRequest, timeoutMs: number) => Promise<unknown>;
  timeoutMs: number;
}

export class HintRouter {
  constructor(private readonly deps: HintRouterDeps) {}

  /** True when the target is no longer in the cluster: its hints go to the key's replicas. */
  isGone(target: string): boolean {
    return this.deps.membership.state(target) === 'removed';
  }

  /** Delivers a hint; rejects when no node that should hold it took it. */
  async send(target: string, hint: Hint): Promise<void> {
    const merge = this.merge(hint);
    if (!this.isGone(target)) {
      await this.deps.call(target, merge, this.deps.timeoutMs);
      return;
    }
    const replicas = this.replicas(hint);
    const results = await Promise.allSettled(
      replicas.map((id) => this.deps.call(id, merge, this.deps.timeoutMs)),
    );
    // One true replica is enough: anti-entropy spreads it to the others.
    if (!results.some((r) => r.status === 'fulfilled')) {
      throw new Error(`no replica of the key took the hint for departed ${target}`);
    }
  }

  /** True when some current true replica of the key already holds everything the hint carries. */
  async redundant(hint: Hint): Promise<boolean> {
    const carried = decodeObject(hint.obj);
    const get: ReplicaRequest = { op: 'get', b: hint.bucket, k: hint.key };
    const replies = await Promise.allSettled(
      this.replicas(hint).map((id) => this.deps.call(id, get, this.deps.timeoutMs)),
    );
    return replies.some((r) => {
      if (r.status === 'rejected') return false;
      const { obj } = r.value as GetReply;
      return obj !== null && covers(decodeObject(obj), carried);
    });
  }

  private replicas(hint: Hint): string[] {
    const { n } = this.deps.props.get(hint.bucket);
    return this.deps.membership.ring().preferenceList(hashKey(hint.bucket, hint.key), n);
  }

  private merge(hint: Hint): ReplicaRequest {
    const lww = this.deps.props.get(hint.bucket).conflict === 'lww';
    return { op: 'merge', b: hint.bucket, k: hint.key, obj: hint.obj, lww };
  }
}
