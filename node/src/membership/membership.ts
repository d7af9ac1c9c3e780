/**
 * Cluster membership as the rest of the node sees it: who the members are, where to reach them,
 * and the ring they form. Static for now; gossip will implement the same interface.
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
  /** The ring of current members (a new object whenever membership changes). */
  ring(): Ring;
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
