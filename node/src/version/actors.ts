/**
 * Causal identity: the one owner of dot uniqueness. A dot (actor id, counter) must never name two
 * different writes, or a merge takes two writes for one and drops the other. This module decides, for
 * every write a node coordinates, which actor id the new dot is minted under.
 *
 * The rule: an actor may mint the next dot of a key only while the node's local copy of that key holds
 * every dot that actor ever minted on it. The node then knows the actor's highest counter there, and the
 * next one is new. Local state loses dots in four ways, and each ends the actor:
 * - a restart (a crash may lose the last writes, a wiped disk all of them): actor ids carry an
 *   incarnation tag drawn at random when the process starts, so no actor outlives its process and
 *   nothing has to be persisted or trusted on disk (a clock set back or a wiped data directory cannot
 *   bring an old actor back);
 * - a missing local copy (a key never written here, one reaped, or a stand-in write, which has no
 *   local copy of the key): the write gets an actor of its own, minted on the spot;
 * - a local delete (tombstone reaping, cleanup): the actors of this incarnation in the deleted copy are
 *   retired (every actor with a dot on a key has its entry in the key's local copy), so a copy merged
 *   back later (a late hint, a replica that missed the reap) cannot make an actor continue from a
 *   counter below the one it had reached. Past RETIRED_LIMIT retired actors, every actor minted so far
 *   is retired at once instead, which bounds the memory this takes;
 * - pruning: the actors this node may still continue are protected from clock pruning (isActive).
 *
 * Actor ids look like `<node>~<incarnation>~<n>`, n in base 36. A key written by one coordinator holds
 * one entry per incarnation of that coordinator (a restart adds one); old, value-less entries are
 * pruned (version/dvvset.ts prune).
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from './dvvset.js';

/** Retired actors remembered one by one before a retirement of all of them (a floor) replaces them. */
const RETIRED_LIMIT = 10_000;

export class ActorMint {
  /** Random per process: 48 bits, so two incarnations of one node collide with probability 2^-48. */
  readonly incarnation: string;
  private readonly prefix: string;
  private next = 0;
  /** Actors numbered below this may not be continued (all were retired at once). */
  private floor = 0;
  /** Actors at or above the floor that were retired one by one. */
  private readonly retired = new Set<number>();

  constructor(
    readonly node: string,
    incarnation: string = randomBytes(6).toString('base64url'),
  ) {
    this.incarnation = incarnation;
    this.prefix = `${node}~${incarnation}~`;
  }

  /**
   * The actor to mint a key's next dot under, given the local copy of the key (undefined when there is
   * none). Call under the key's lock, and store the result before releasing it.
   */
  actorFor(local: Clock | undefined): string {
    if (local) {
      let best = -1;
      for (const e of local.entries) {
        const n = this.numberOf(e.id);
        if (n > best && this.active(n)) best = n;
      }
      if (best >= 0) return this.prefix + best.toString(36);
    }
    return this.prefix + (this.next++).toString(36);
  }

  /** A key was deleted from the local store: the actors of its deleted copy may not be continued. */
  retire(deleted: Clock): void {
    for (const e of deleted.entries) {
      const n = this.numberOf(e.id);
      if (this.active(n)) this.retired.add(n);
    }
    if (this.retired.size > RETIRED_LIMIT) this.retireAll();
  }

  /** No actor minted so far may be continued. */
  retireAll(): void {
    this.floor = this.next;
    this.retired.clear();
  }

  /** True when id is an actor this node may still continue (clock pruning must keep its entry). */
  isActive(id: string): boolean {
    return this.active(this.numberOf(id));
  }

  private active(n: number): boolean {
    return n >= this.floor && !this.retired.has(n);
  }

  /** True when id was minted by this node in any incarnation. */
  isOwn(id: string): boolean {
    return id.startsWith(`${this.node}~`);
  }

  // The actor's number when it is one of this incarnation's, else -1.
  private numberOf(id: string): number {
    if (!id.startsWith(this.prefix)) return -1;
    const digits = id.slice(this.prefix.length);
    const n = Number.parseInt(digits, 36);
    return Number.isSafeInteger(n) && n.toString(36) === digits ? n : -1;
  }
}
