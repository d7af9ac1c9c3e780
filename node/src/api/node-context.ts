/** What the HTTP handlers need from the running node. */
import type { Logger } from 'pino';
import type { BucketPropsTable, StampedProps } from '../buckets/props.js';
import type { NodeConfig } from '../config.js';
import type { Coordinator } from '../coordinator/coordinator.js';
import type { Membership } from '../membership/membership.js';
import type { NodeMetrics } from '../metrics/metrics.js';
import type { Cleanup } from '../streaming/cleanup.js';
import type { Streamer } from '../streaming/streamer.js';

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
   * False while a restarted node has not yet heard from its cluster: it must not coordinate on the
   * partial ring it would have (client requests get 503 not_ready).
   */
  rejoined(): boolean;
  /** Join and decommission (gossip membership only). */
  streamer?: Streamer;
  /** Deletes the keys of ranges this node no longer replicates. */
  cleanup: Cleanup;
}
