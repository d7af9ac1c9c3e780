/** What the HTTP handlers need from the running node. */
import type { Logger } from 'pino';
import type { BucketPropsTable, StampedProps } from '../buckets/props.js';
import type { NodeConfig } from '../config.js';
import type { Coordinator } from '../coordinator/coordinator.js';
import type { Membership } from '../membership/membership.js';
import type { NodeMetrics } from '../metrics/metrics.js';
import type { Cleanup } from '../streaming/cleanup.js';
import type { StaticRebuild } from '../streaming/rebuild.js';
import type { Streamer } from '../streaming/streamer.js';
import type { ReplicationWidening } from '../streaming/widen.js';
import type { Authenticator } from './auth.js';

export interface NodeContext {
  config: NodeConfig;
  membership: Membership;
  coordinator: Coordinator;
  props: BucketPropsTable;
  metrics: NodeMetrics;
  log: Logger;
  /** Stores bucket props locally and pushes them to every member. */
  setProps(stamped: StampedProps): Promise<void>;
  /** Asks peers whose HTTP URL is not known yet for it. */
  learnPeers(): Promise<void>;
  /** True once the node has joined and serves requests. */
  ready(): boolean;
  /**
   * Why this node must not coordinate client requests now, or undefined when it may: a restarted node
   * that has not yet heard from its cluster (it would coordinate on a partial ring), or a joining one
   * (new or wiped: it has not streamed its ranges in). Client requests get 503 not_ready.
   */
  notServing(): string | undefined;
  /** Join and decommission (gossip membership only). */
  streamer?: Streamer;
  /** The rebuild of a static node with no data (static membership only). */
  rebuild?: StaticRebuild;
  /** Streams a bucket's keys to its new replicas when its n is raised. */
  widening: ReplicationWidening;
  /** Client authentication, when --auth-tokens-file is set; undefined: the API is open. */
  auth?: Authenticator;
  /** The cluster's secret that authenticates the contexts this node issues and accepts. */
  contextSecret: Buffer;
  /** Deletes the keys of ranges this node no longer replicates. */
  cleanup: Cleanup;
}
