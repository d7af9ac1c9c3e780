/**
 * The node's Prometheus metrics (names are part of the external contract, see shared/DESIGN.md).
 * Labels never carry keys or bucket names.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export type Op = 'get' | 'put' | 'delete' | 'props';

export interface StorageStats {
  keys(): number;
  bytes(): Promise<number>;
}

/** Where gauges read their values at scrape time. */
export interface MetricSources {
  storage: StorageStats;
  members: MemberCounts;
  hints: PendingHints;
  /** Hints past the hint window kept because no true replica is known to hold their write. */
  overdueHints?: PendingHints;
  /** phi of every other member (empty with static membership). */
  phis: () => Map<string, number>;
  /** Token ranges a join or decommission of this node has still to move (0 when none is running). */
  streamRangesPending: () => number;
  /** The anti-entropy key index: keys it holds and bytes it takes (off the JS heap). */
  merkleIndex?: { keys(): number; bytes(): number };
}

/** Hints waiting per target replica, read at scrape time. */
export type PendingHints = () => Map<string, number>;

/** Member counts by state, read at scrape time. */
export type MemberCounts = () => Record<string, number>;

/** Outcome of a request to a peer, for dynamo_peer_request_errors_total. */
export type PeerErrorKind = 'unavailable' | 'timeout' | 'remote';

export class NodeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'op' | 'code'>;
  readonly duration: Histogram<'op'>;
  readonly quorumFailures: Counter<'op'>;
  readonly readRepairs: Counter;
  readonly siblings: Histogram;
  readonly peerDuration: Histogram<'op'>;
  readonly peerErrors: Counter<'peer' | 'kind'>;
  readonly expiredPurged: Counter;
  readonly siblingLimitRejections: Counter;
  readonly hintsDelivered: Counter<'target'>;
  readonly hintsExpired: Counter;
  readonly dotCollisions: Counter;
  readonly hintsStored: Counter<'target'>;
  readonly merkleDivergent: Gauge<'peer'>;
  readonly merkleLastExchange: Gauge<'peer'>;
  readonly merkleKeysRepaired: Counter;
  readonly merkleBytes: Counter;
  readonly merkleRebuilds: Counter<'source'>;
  readonly merkleExchanges: Counter;
  readonly merkleExchangeCpu: Counter;
  readonly tombstonesReaped: Counter;
  readonly cleanupDeleted: Counter;
  readonly streamBytes: Counter<'direction'>;
  readonly streamKeys: Counter<'direction'>;

  constructor(
    node: string,
    { storage, members, hints, overdueHints, phis, streamRangesPending, merkleIndex }: MetricSources,
  ) {
    this.registry.setDefaultLabels({ node });
    collectDefaultMetrics({ register: this.registry });
    // Gauges whose names end in _total break Prometheus naming rules (promtool flags them); the same
    // counts stay exported as nodejs_active_handles, nodejs_active_requests and nodejs_active_resources.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      this.registry.removeSingleMetric(name);
    }
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'dynamo_requests_total',
      help: 'Client requests handled by this node as coordinator, by operation and HTTP status code.',
      labelNames: ['op', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'dynamo_request_duration_seconds',
      help: 'Time from receiving a client request to sending the response.',
      labelNames: ['op'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.quorumFailures = new Counter({
      name: 'dynamo_quorum_failures_total',
      help: 'Requests answered 503 because fewer replicas replied than r or w required.',
      labelNames: ['op'],
      registers,
    });
    this.readRepairs = new Counter({
      name: 'dynamo_read_repairs_total',
      help: 'Stale replicas updated by read repair.',
      registers,
    });
    this.siblings = new Histogram({
      name: 'dynamo_siblings',
      help: 'Number of sibling values returned per successful read of an existing key.',
      buckets: [1, 2, 3, 5, 10, 25, 100],
      registers,
    });
    this.peerDuration = new Histogram({
      name: 'dynamo_peer_request_duration_seconds',
      help: 'Round trip of node-to-node requests sent by this node (replica operations, anti-entropy, hint delivery), by operation.',
      labelNames: ['op'],
      buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    });
    this.peerErrors = new Counter({
      name: 'dynamo_peer_request_errors_total',
      help: 'Node-to-node requests that failed, by peer and kind (unavailable, timeout, remote).',
      labelNames: ['peer', 'kind'],
      registers,
    });
    this.expiredPurged = new Counter({
      name: 'dynamo_expired_values_purged_total',
      help: 'Values past their time-to-live whose bytes this node purged.',
      registers,
    });
    this.siblingLimitRejections = new Counter({
      name: 'dynamo_sibling_limit_rejections_total',
      help: 'Client writes refused (409) because they would leave more siblings than --max-siblings.',
      registers,
    });
    this.hintsStored = new Counter({
      name: 'dynamo_hints_stored_total',
      help: 'Hints stored by this node for replicas that missed a write, by target replica.',
      labelNames: ['target'],
      registers,
    });
    this.hintsDelivered = new Counter({
      name: 'dynamo_hints_delivered_total',
      help: 'Hints delivered by this node to their replica, by target replica.',
      labelNames: ['target'],
      registers,
    });
    this.dotCollisions = new Counter({
      name: 'dynamo_dot_collisions_total',
      help: 'Dots found naming two different values when merging replicas (both values are kept as siblings); should stay 0.',
      registers,
    });
    this.hintsExpired = new Counter({
      name: 'dynamo_hints_expired_total',
      help: 'Hints dropped undelivered after the hint window.',
      registers,
    });
    new Gauge({
      name: 'dynamo_hints_pending',
      help: 'Hints this node holds for replicas that missed writes, by target replica.',
      labelNames: ['target'],
      registers,
      collect() {
        this.reset();
        for (const [target, count] of hints()) this.set({ target }, count);
      },
    });
    new Gauge({
      name: 'dynamo_hints_overdue',
      help: 'Hints past the hint window that are kept (and still delivered) because no true replica of their key is known to hold their write: possibly the last copy.',
      labelNames: ['target'],
      registers,
      collect() {
        this.reset();
        for (const [target, count] of overdueHints?.() ?? []) this.set({ target }, count);
      },
    });
    this.merkleDivergent = new Gauge({
      name: 'dynamo_merkle_divergent_ranges',
      help: 'Merkle leaves (key ranges) that differed from the peer in the last anti-entropy exchange.',
      labelNames: ['peer'],
      registers,
    });
    this.merkleLastExchange = new Gauge({
      name: 'dynamo_merkle_last_exchange_timestamp_seconds',
      help: 'When this node last completed an anti-entropy exchange with the peer.',
      labelNames: ['peer'],
      registers,
    });
    this.merkleKeysRepaired = new Counter({
      name: 'dynamo_merkle_keys_repaired_total',
      help: 'Keys found different by anti-entropy and merged between the replicas.',
      registers,
    });
    this.merkleRebuilds = new Counter({
      name: 'dynamo_merkle_rebuilds_total',
      help: 'Builds of the anti-entropy trees: source="store" scans the whole store (a start after a crash or without a saved index), source="index" derives them from the key index (a clean restart, a new ring, a bucket\'s n changed; no store read).',
      labelNames: ['source'],
      registers,
    });
    this.merkleExchanges = new Counter({
      name: 'dynamo_merkle_exchanges_total',
      help: 'Anti-entropy exchanges this node ran to the end.',
      registers,
    });
    this.merkleExchangeCpu = new Counter({
      name: 'dynamo_merkle_exchange_cpu_seconds_total',
      help: 'Process CPU (user + system) spent from the start to the end of the anti-entropy exchanges this node ran (anything else running meanwhile included).',
      registers,
    });
    new Gauge({
      name: 'dynamo_merkle_index_keys',
      help: 'Keys in the anti-entropy key index (every stored object once the trees are built).',
      registers,
      collect() {
        this.set(merkleIndex?.keys() ?? 0);
      },
    });
    new Gauge({
      name: 'dynamo_merkle_index_bytes',
      help: 'Bytes the anti-entropy key index holds, outside the JS heap.',
      registers,
      collect() {
        this.set(merkleIndex?.bytes() ?? 0);
      },
    });
    this.merkleBytes = new Counter({
      name: 'dynamo_merkle_bytes_transferred_total',
      help: 'Object bytes anti-entropy sent to or fetched from peers.',
      registers,
    });
    this.cleanupDeleted = new Counter({
      name: 'dynamo_cleanup_keys_deleted_total',
      help: 'Keys deleted by cleanup because this node no longer replicates them (after a join, a decommission or a lower n).',
      registers,
    });
    this.tombstonesReaped = new Counter({
      name: 'dynamo_tombstones_reaped_total',
      help: 'Keys whose tombstones this node removed from every replica after the grace period.',
      registers,
    });
    this.streamBytes = new Counter({
      name: 'dynamo_stream_bytes_total',
      help: 'Object bytes streamed by joins and decommissions: in (received by this node) or out (sent).',
      labelNames: ['direction'],
      registers,
    });
    this.streamKeys = new Counter({
      name: 'dynamo_stream_keys_total',
      help: 'Objects streamed by joins and decommissions: in (received by this node) or out (sent).',
      labelNames: ['direction'],
      registers,
    });
    for (const direction of ['in', 'out']) {
      this.streamBytes.inc({ direction }, 0);
      this.streamKeys.inc({ direction }, 0);
    }
    new Gauge({
      name: 'dynamo_stream_ranges_pending',
      help: "Token ranges this node's join or decommission has still to stream (0 when none is running).",
      registers,
      collect() {
        this.set(streamRangesPending());
      },
    });
    new Gauge({
      name: 'dynamo_member_phi',
      help: 'phi-accrual suspicion of each other member (gossip membership); above --phi-threshold it is down.',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const [peer, phi] of phis()) this.set({ peer }, phi);
      },
    });
    new Gauge({
      name: 'dynamo_members',
      help: 'Cluster members by state, as this node sees them.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, count] of Object.entries(members())) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'dynamo_storage_keys',
      help: 'Objects stored on this node (tombstones included).',
      registers,
      collect() {
        this.set(storage.keys());
      },
    });
    new Gauge({
      name: 'dynamo_storage_bytes',
      help: "LevelDB's estimate of the bytes this node's objects take on disk.",
      registers,
      async collect() {
        this.set(await storage.bytes());
      },
    });
  }
}
