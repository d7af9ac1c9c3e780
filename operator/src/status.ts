// The DynamoCluster status from what a reconcile saw and decided: phase, counts, members and conditions. Pure.
import type {
  Condition,
  ConditionType,
  DecommissionRecord,
  DynamoClusterStatus,
  MemberStatus,
  Phase,
} from './api-types.js';
import { podName } from './names.js';
import { failuresCondition, type NodeFailure } from './node-failures.js';
import type { PodView, ScalingDecision } from './scaling.js';
import type { TokenAssignments } from './token-assignments.js';

/** Conditions with `next` set: lastTransitionTime moves only when the status (True/False/Unknown) changes. */
export function setCondition(
  conditions: readonly Condition[],
  next: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
): Condition[] {
  const old = conditions.find((c) => c.type === next.type);
  const lastTransitionTime =
    old !== undefined && old.status === next.status ? old.lastTransitionTime : now.toISOString();
  const updated: Condition = { ...next, lastTransitionTime };
  return old === undefined
    ? [...conditions, updated]
    : conditions.map((c) => (c.type === next.type ? updated : c));
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: ConditionType,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export interface StatusInput {
  cluster: string;
  generation: number;
  desiredNodes: number;
  /** Problems with the spec (Valid=False); empty when valid. */
  problems: string[];
  decision?: ScalingDecision;
  /** Why the last decommission step could not go on (failed or stalled); undefined when it is fine. */
  decommissionProblem?: string;
  decommissioning?: DecommissionRecord | null;
  /** StatefulSet replicas after this reconcile. */
  replicas: number;
  pods: PodView[];
  tokens: TokenAssignments;
  /** Node pods that keep failing with a reason (node-failures.ts): they make the cluster Degraded. */
  nodeFailures?: readonly NodeFailure[];
  /** Ring state per node from a ready node's /admin/ring, when it could be read. */
  ringStates?: Map<string, string>;
  previous: DynamoClusterStatus | undefined;
  now: Date;
}

/** Members: every node of the StatefulSet (and any with tokens), with token count and state. */
function members(input: StatusInput): MemberStatus[] {
  const count = Math.max(input.replicas, input.desiredNodes);
  const names = new Set<string>();
  for (let i = 0; i < count; i++) names.add(podName(input.cluster, i));
  for (const name of input.tokens.keys()) names.add(name);
  const out: MemberStatus[] = [];
  for (const name of names) {
    const ordinal = Number(name.slice(input.cluster.length + 1));
    const pod = input.pods.find((p) => p.ordinal === ordinal);
    let state: string;
    if (input.decommissioning?.node === name) state = 'Leaving';
    else if (ordinal >= input.replicas) state = pod ? 'Terminating' : 'Pending';
    else if (!pod) state = 'Missing';
    else state = pod.ready ? 'Ready' : 'NotReady';
    const ring = input.ringStates?.get(name);
    out.push({ name, tokens: input.tokens.get(name)?.length ?? 0, state: ring ? `${state}/${ring}` : state });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
}

/** The status to write. Keeps `decommissioning` as given (the steps own it). */
export function buildStatus(input: StatusInput): DynamoClusterStatus {
  const { now, decision } = input;
  let conditions: Condition[] = input.previous?.conditions ?? [];
  const set = (type: ConditionType, status: Condition['status'], reason: string, message: string): void => {
    conditions = setCondition(
      conditions,
      { type, status, reason, message, observedGeneration: input.generation },
      now,
    );
  };
  const readyNodes = input.pods.filter((p) => p.ordinal < input.replicas && p.ready).length;
  const allReady = readyNodes === input.replicas && input.replicas === input.desiredNodes;
  const record = input.decommissioning ?? undefined;

  if (input.problems.length > 0) {
    set('Valid', 'False', 'InvalidSpec', input.problems.join('; '));
  } else if (decision?.action === 'refuse') {
    set('Valid', 'False', 'ScaleDownRefused', decision.reason);
  } else {
    set('Valid', 'True', 'SpecValid', 'the spec is valid');
  }

  set(
    'Ready',
    allReady && !record ? 'True' : 'False',
    allReady && !record ? 'AllNodesReady' : 'NodesNotReady',
    `${readyNodes} of ${input.desiredNodes} nodes ready`,
  );

  // A scale-up lasts until its last node is ready: that node streams its data in first.
  const lastReady = input.pods.some((p) => p.ordinal === input.replicas - 1 && p.ready);
  const wasScalingUp = findCondition(input.previous?.conditions, 'Scaling')?.reason === 'ScalingUp';
  const scalingUp =
    input.replicas < input.desiredNodes || decision?.action === 'scale-up' || (wasScalingUp && !lastReady);
  const scalingDown = input.replicas > input.desiredNodes || record !== undefined;
  if (scalingUp) {
    const message =
      decision?.action === 'wait' ? decision.reason : `scaling up to ${input.desiredNodes} nodes`;
    set('Scaling', 'True', 'ScalingUp', message);
  } else if (scalingDown && decision?.action !== 'refuse') {
    // A scale-down that waits (for a node to be ready, a pod to go) says what it waits for.
    const message =
      decision?.action === 'wait'
        ? decision.reason
        : `scaling down to ${input.desiredNodes} nodes, one node at a time`;
    set('Scaling', 'True', 'ScalingDown', message);
  } else {
    set('Scaling', 'False', 'Steady', `${input.replicas} nodes`);
  }

  if (record) {
    const message = input.decommissionProblem ?? describeRecord(record);
    set(
      'Decommissioning',
      'True',
      input.decommissionProblem ? 'DecommissionStalled' : 'Decommissioning',
      message,
    );
  } else {
    set('Decommissioning', 'False', 'None', 'no node is being decommissioned');
  }

  const down = input.pods.filter((p) => p.ordinal < input.replicas && !p.ready).map((p) => p.ordinal);
  // The newest node of a scale-up is expected to be unready while it streams its data in.
  const joining = scalingUp ? input.replicas - 1 : -1;
  const missing: number[] = [];
  for (let i = 0; i < input.replicas; i++) {
    if (i !== joining && !input.pods.some((p) => p.ordinal === i)) missing.push(i);
  }
  const unhealthy = [...down.filter((o) => o !== joining), ...missing].sort((a, b) => a - b);
  if (input.nodeFailures?.length) {
    const { reason, message } = failuresCondition(input.nodeFailures);
    set('Degraded', 'True', reason, message);
  } else if (input.decommissionProblem) {
    set('Degraded', 'True', 'DecommissionStalled', input.decommissionProblem);
  } else if (unhealthy.length > 0 && readyNodes > 0) {
    set(
      'Degraded',
      'True',
      'NodesNotReady',
      `not ready: ${unhealthy.map((o) => podName(input.cluster, o)).join(', ')}`,
    );
  } else {
    set('Degraded', 'False', 'Healthy', 'no node is failing');
  }

  let phase: Phase;
  if (input.problems.length > 0) phase = 'Invalid';
  else if (record) phase = 'Decommissioning';
  else if (input.decommissionProblem || findCondition(conditions, 'Degraded')?.status === 'True')
    phase = 'Degraded';
  else if (readyNodes === 0 && input.replicas <= 1 && input.desiredNodes > 0) phase = 'Creating';
  else if (scalingUp || scalingDown) phase = 'Scaling';
  else if (allReady) phase = 'Ready';
  else phase = 'Pending';

  return {
    phase,
    nodes: input.replicas,
    readyNodes,
    members: members(input),
    conditions,
    observedGeneration: input.generation,
    decommissioning: input.decommissioning ?? null,
  };
}

function describeRecord(record: DecommissionRecord): string {
  const pending = record.rangesPending === undefined ? '' : `, ${record.rangesPending} ranges pending`;
  return `decommissioning ${record.node} since ${record.startedAt}${record.state ? ` (${record.state}${pending})` : ''}`;
}
