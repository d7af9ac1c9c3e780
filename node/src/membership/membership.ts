/**
 * Cluster membership as the rest of the node sees it: who the members are, where to reach them,
 * and the ring they form. Static (a fixed list) or gossip (members join and leave) behind one interface.
 */
import type { Ring, Token } from '../ring/index.js';

export type MemberState = 'up' | 'joining' | 'leaving' | 'down' | 'removed';

export interface Member {
  id: string;
  /** host:port of the member's node-to-node transport. */
  address: string;
  tokens: Token[];
  rack?: string;
  /** URL of the member's HTTP API, when known. */
  http?: string;
}

export interface Membership {
  readonly self: string;
  readonly cluster: string;
  /**
   * The ring that serves reads and writes now: members that are up or leaving (a new object whenever
   * membership changes). Joining members are not in it until they have streamed their data in.
   */
  ring(): Ring;
  /**
   * The ring once the joins and leaves under way complete (joining members in, leaving ones out), or
   * undefined when none is under way. Writes also go to its replicas, so nothing written during a move
   * is missing afterwards.
   */
  pendingRing(): Ring | undefined;
  members(): readonly Member[];
  /** Transport address of a member, or undefined when unknown. */
  address(id: string): string | undefined;
  state(id: string): MemberState;
  /**
   * Removes a member from the cluster for good (the admin "remove node" action). Throws
   * InvalidRequestError when this membership cannot, or when the member is not down.
   */
  remove(id: string): void;
  /** Records the HTTP URL a member advertises (learned from the member itself). */
  learnHttp(id: string, url: string): void;
}
