// Scaling decisions, pure: from what the operator observed, the one thing to do next. The reconcile steps carry
// them out. The rule that keeps data safe: the StatefulSet only shrinks past a node after that node reported it
// has left the ring (its data streamed to the new owners), or when the ring confirms it never held any.
import type { DecommissionRecord } from './api-types.js';
import { podName } from './names.js';

/** A pod of the cluster as observed. */
export interface PodView {
  ordinal: number;
  ready: boolean;
  podIP?: string;
}

export interface ScalingObservation {
  cluster: string;
  /** spec.nodes. */
  desiredNodes: number;
  /** The StatefulSet's spec.replicas; undefined when there is no StatefulSet yet. */
  replicas: number | undefined;
  pods: PodView[];
  /** spec.replication.n: the cluster never shrinks below it. */
  minNodes: number;
  /** The scale-down recorded in status, if any. */
  decommissioning?: DecommissionRecord | null;
  /** Whether the nodes left after the next decommission can hold the data (see checkCapacity). */
  capacity?: CapacityVerdict;
  /** Member states in a ready node's ring view (the lowest ready ordinal); undefined when none could be read. */
  ringStates?: ReadonlyMap<string, string>;
}

export type ScalingDecision =
  /** Nothing to change: spec.nodes nodes exist. */
  | { action: 'steady'; replicas: number }
  /** Give `node` its tokens, then raise the StatefulSet to `replicas` (one node more). */
  | { action: 'scale-up'; replicas: number; node: string }
  /** Keep the StatefulSet as is and look again later. */
  | { action: 'wait'; replicas: number; reason: string; afterMs: number }
  /** The requested scale-down is unsafe: keep everything, say why (Valid=False). */
  | { action: 'refuse'; replicas: number; reason: string }
  /** Record in status that `node` is being decommissioned, before asking it to leave. */
  | { action: 'begin-decommission'; replicas: number; node: string; ordinal: number }
  /** Ask `node` to leave (idempotent) and read its progress; shrink once it has left. */
  | { action: 'decommission'; replicas: number; node: string; ordinal: number }
  /** The StatefulSet no longer has `node`: delete its claim (unless retained), drop its tokens, clear the record. */
  | { action: 'finish-decommission'; replicas: number; node: string; ordinal: number };

const WAIT_MS = 5_000;

function allReady(pods: readonly PodView[], below: number, except?: number): boolean {
  for (let ordinal = 0; ordinal < below; ordinal++) {
    if (ordinal === except) continue;
    if (!pods.some((p) => p.ordinal === ordinal && p.ready)) return false;
  }
  return true;
}

function notReady(pods: readonly PodView[], below: number): string[] {
  const names: number[] = [];
  for (let ordinal = 0; ordinal < below; ordinal++) {
    if (!pods.some((p) => p.ordinal === ordinal && p.ready)) names.push(ordinal);
  }
  return names.map(String);
}

/** The next scaling action. Scale-up adds one node at a time; scale-down removes the highest ordinal first. */
export function planScaling(obs: ScalingObservation): ScalingDecision {
  const replicas = obs.replicas ?? 0;
  const record = obs.decommissioning;
  if (record) {
    const { node, ordinal } = record;
    if (replicas > ordinal + 1) {
      return {
        action: 'wait',
        replicas,
        afterMs: WAIT_MS * 6,
        reason: `node ${node} is recorded as decommissioning but the StatefulSet has ${replicas} replicas; not shrinking past nodes that have not left`,
      };
    }
    if (replicas === ordinal + 1) return { action: 'decommission', replicas, node, ordinal };
    return { action: 'finish-decommission', replicas, node, ordinal };
  }

  if (replicas < obs.desiredNodes) {
    const next = podName(obs.cluster, replicas);
    if (!allReady(obs.pods, replicas)) {
      return {
        action: 'wait',
        replicas,
        afterMs: WAIT_MS,
        reason: `waiting for ${describe(obs.cluster, notReady(obs.pods, replicas))} to be ready before adding ${next}`,
      };
    }
    // Ready is the node's own word; the next node waits until the last one is `up` in the ring as another
    // node sees it. (An empty view is no view: only a node that answers with members counts.)
    const newest = podName(obs.cluster, replicas - 1);
    const seen = obs.ringStates;
    if (replicas >= 2 && seen !== undefined && seen.size > 0 && seen.get(newest) !== 'up') {
      return {
        action: 'wait',
        replicas,
        afterMs: WAIT_MS,
        reason: `waiting for ${newest} to be up in the ring as its peers see it (${seen.get(newest) ?? 'not a member'}) before adding ${next}`,
      };
    }
    return { action: 'scale-up', replicas: replicas + 1, node: next };
  }

  if (replicas > obs.desiredNodes) {
    const ordinal = replicas - 1;
    const node = podName(obs.cluster, ordinal);
    if (replicas - 1 < obs.minNodes) {
      return {
        action: 'refuse',
        replicas,
        reason: `cannot decommission ${node}: ${replicas - 1} nodes would be fewer than replication.n (${obs.minNodes})`,
      };
    }
    if (obs.capacity && !obs.capacity.ok) {
      return { action: 'refuse', replicas, reason: `cannot decommission ${node}: ${obs.capacity.reason}` };
    }
    // The node that leaves may itself be unready (a scale-up that never finished); every node that stays must
    // be ready, since they receive its data.
    if (!allReady(obs.pods, replicas, ordinal)) {
      return {
        action: 'wait',
        replicas,
        afterMs: WAIT_MS,
        reason: `waiting for ${describe(obs.cluster, notReady(obs.pods, ordinal))} to be ready before decommissioning ${node}`,
      };
    }
    return { action: 'begin-decommission', replicas, node, ordinal };
  }

  return { action: 'steady', replicas };
}

function describe(cluster: string, ordinals: string[]): string {
  return ordinals.map((o) => `${cluster}-${o}`).join(', ');
}

/** A node's /admin/status answer (the part the operator reads). */
export interface NodeStatus {
  id?: string;
  state: 'joining' | 'up' | 'leaving' | 'left' | string;
  stream?: {
    kind?: string;
    rangesTotal?: number;
    rangesPending?: number;
    bytes?: number;
    keys?: number;
    startedAt?: string | number | null;
    finishedAt?: string | number | null;
    error?: string | null;
  } | null;
}

/** What the operator learnt about a node being decommissioned. */
export interface DecommissionObservation {
  /** The answer to POST /admin/decommission; undefined when the node could not be reached. */
  status?: NodeStatus;
  /** When the node is unreachable: its state in a ready peer's ring view; null when the peer does not list it. */
  ringState?: string | null;
  /** Whether a peer's ring view could be read at all. */
  ringKnown: boolean;
}

export type DecommissionDecision =
  /** The node's data is with its new owners (or it never had any): the StatefulSet may drop it. */
  | { action: 'shrink'; reason: string }
  /** Still streaming, or not yet started: ask again later. */
  | { action: 'wait'; reason: string; afterMs: number }
  /** The node reported an error: stop the scale-down and say why (the request is re-issued later). */
  | { action: 'failed'; reason: string; afterMs: number };

/** What to do with a node being decommissioned, from its own answer or, if it is unreachable, the ring's. */
export function decideDecommission(node: string, obs: DecommissionObservation): DecommissionDecision {
  const { status } = obs;
  if (status !== undefined) {
    if (status.state === 'left') return { action: 'shrink', reason: `${node} has left the ring` };
    const error = status.stream?.error;
    if (error)
      return { action: 'failed', reason: `decommission of ${node} failed: ${error}`, afterMs: 30_000 };
    if (status.state === 'leaving') {
      const s = status.stream;
      const progress =
        s && typeof s.rangesPending === 'number' && typeof s.rangesTotal === 'number'
          ? `, ${s.rangesPending} of ${s.rangesTotal} ranges pending`
          : '';
      return { action: 'wait', reason: `${node} is streaming its data away${progress}`, afterMs: 5_000 };
    }
    return { action: 'wait', reason: `${node} is ${status.state}; decommission requested`, afterMs: 5_000 };
  }
  if (!obs.ringKnown) {
    return {
      action: 'wait',
      reason: `${node} is unreachable and no other node could be asked whether it holds data`,
      afterMs: 10_000,
    };
  }
  if (obs.ringState === null || obs.ringState === undefined || obs.ringState === 'removed') {
    return {
      action: 'shrink',
      reason: `${node} is unreachable and not a member of the ring, so it holds no data`,
    };
  }
  return {
    action: 'failed',
    reason: `${node} is unreachable but still a ring member (${obs.ringState}); it may hold data: bring it back, or remove it for good with POST /admin/members/${node}/remove`,
    afterMs: 15_000,
  };
}

export interface CapacityVerdict {
  ok: boolean;
  reason?: string;
}

/** Fraction of a volume the data may fill after a scale-down. */
export const CAPACITY_HEADROOM = 0.8;

/**
 * Whether `remaining` nodes can hold all the data the cluster holds now (the sum of every node's bytes, replicas
 * included, spread evenly), within CAPACITY_HEADROOM of each node's volume. Unknown sizes pass: the node count
 * check (never below n) still applies.
 */
export function checkCapacity(
  bytesPerNode: ReadonlyArray<number | undefined>,
  remaining: number,
  volumeBytes: number | undefined,
): CapacityVerdict {
  if (volumeBytes === undefined || bytesPerNode.length === 0 || bytesPerNode.some((b) => b === undefined)) {
    return { ok: true };
  }
  const total = bytesPerNode.reduce<number>((sum, b) => sum + (b ?? 0), 0);
  const perNode = total / Math.max(1, remaining);
  if (perNode <= volumeBytes * CAPACITY_HEADROOM) return { ok: true };
  const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
  return {
    ok: false,
    reason: `${remaining} nodes would hold about ${gib(perNode)} each, over ${CAPACITY_HEADROOM * 100}% of their ${gib(volumeBytes)} volumes`,
  };
}
