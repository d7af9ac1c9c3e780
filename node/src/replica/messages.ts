/** The node-to-node messages about objects and bucket props, and their replies. */
import type { StampedProps } from '../buckets/props.js';
import type { Sibling, VersionVector } from '../version/index.js';

export type ReplicaRequest =
  /** Read the local copy. */
  | { op: 'get'; b: string; k: string; rid?: string }
  /** Coordinate a client write: a new event on this replica's clock, superseding ctx. */
  | { op: 'put'; b: string; k: string; ctx: VersionVector; sib: Sibling; lww: boolean; rid?: string }
  /** Merge an object (replication, read repair) into the local copy. */
  | { op: 'merge'; b: string; k: string; obj: Buffer; lww: boolean; rid?: string }
  /**
   * Sloppy quorum when no replica of the key is reachable: coordinate the write here, as a stand-in,
   * on an empty local state (so only ctx is superseded), and keep the result as a hint for target.
   */
  | {
      op: 'put.hint';
      target: string;
      b: string;
      k: string;
      ctx: VersionVector;
      sib: Sibling;
      lww: boolean;
      rid?: string;
    }
  /** Sloppy quorum: keep a write for a replica that is down, as a hint, and hand it over later. */
  | { op: 'hint.store'; target: string; b: string; k: string; obj: Buffer; rid?: string }
  /** Tombstone GC: delete the key if the local copy is still exactly this all-tombstone version. */
  | { op: 'reap'; b: string; k: string; obj: Buffer }
  | { op: 'props.set'; props: StampedProps }
  | { op: 'props.all' }
  /** Who the node is and where its HTTP API is. */
  | { op: 'info' };

export interface InfoReply {
  id: string;
  http: string;
  /** Objects this node holds (a static node with none asks whether it must be rebuilt). */
  keys?: number;
}

/** Reply to get: the encoded object, or null when this replica has never seen the key. */
export interface GetReply {
  obj: Buffer | null;
}
/** Reply to reap: true when the key is gone (deleted now, or already absent), false when kept. */
export interface ReapReply {
  reaped: boolean;
}
/** Reply to put: the encoded object as stored after the write. */
export interface PutReply {
  obj: Buffer;
}
