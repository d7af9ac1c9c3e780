import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { DynamoClusterStatus } from '../../operator/src/api-types.js';
import { failureEvent, nodeFailures } from '../../operator/src/node-failures.js';
import { buildStatus, type StatusInput } from '../../operator/src/status.js';

const MISMATCH =
  "token_mismatch: node demo-0's data directory (/var/lib/dynamo) holds the 256 tokens it claimed before, but --initial-tokens assigns it 16 tokens";

function pod(name: string, container: Partial<V1ContainerStatus>, deleting = false): V1Pod {
  return {
    metadata: { name, ...(deleting ? { deletionTimestamp: new Date() } : {}) },
    status: {
      containerStatuses: [
        { name: 'dynamo', image: 'x', imageID: '', ready: false, restartCount: 0, ...container },
      ],
    },
  };
}

const crashLooping = (message: string, restarts = 3, exitCode = 1): Partial<V1ContainerStatus> => ({
  restartCount: restarts,
  state: { waiting: { reason: 'CrashLoopBackOff' } },
  lastState: { terminated: { exitCode, message } },
});

describe('nodeFailures', () => {
  it('reads the node’s own reason from its termination message', () => {
    const failures = nodeFailures('demo', [pod('demo-0', crashLooping(MISMATCH))]);
    expect(failures).toEqual([
      { pod: 'demo-0', code: 'token_mismatch', reason: 'TokenMismatch', message: MISMATCH, restarts: 3 },
    ]);
    expect(
      nodeFailures('demo', [pod('demo-1', crashLooping('removed_member: node demo-1 was removed'))])[0],
    ).toMatchObject({ reason: 'RemovedMember' });
  });

  it('takes the last line of a log tail (a start script that gave up) as a NodeFailing reason', () => {
    const tail = 'waiting for tokens\nno tokens for demo-2 in /etc/dynamo/tokens/demo-2';
    expect(nodeFailures('demo', [pod('demo-2', crashLooping(tail))])).toEqual([
      {
        pod: 'demo-2',
        reason: 'NodeFailing',
        message: 'no tokens for demo-2 in /etc/dynamo/tokens/demo-2',
        restarts: 3,
      },
    ]);
  });

  it('counts a container that just exited, but not one starting again after a single crash', () => {
    const exited = { restartCount: 0, state: { terminated: { exitCode: 2, message: MISMATCH } } };
    expect(nodeFailures('demo', [pod('demo-0', exited)])).toHaveLength(1);
    const startingAgain = { ...crashLooping(MISMATCH, 1), state: { running: {} } };
    expect(nodeFailures('demo', [pod('demo-0', startingAgain)])).toEqual([]);
    // Restarted again and again: failing, even in the moment it runs.
    expect(
      nodeFailures('demo', [pod('demo-0', { ...crashLooping(MISMATCH, 2), state: { running: {} } })]),
    ).toHaveLength(1);
  });

  it('ignores ready nodes, clean exits, exits without a message, pods being deleted and other pods', () => {
    expect(
      nodeFailures('demo', [
        pod('demo-0', { ...crashLooping(MISMATCH), ready: true }),
        pod('demo-1', crashLooping('done', 3, 0)),
        pod('demo-2', crashLooping('')),
        pod('demo-3', crashLooping(MISMATCH), true),
        pod('other-0', crashLooping(MISMATCH)),
      ]),
    ).toEqual([]);
  });
});

describe('failing nodes in the status', () => {
  const now = new Date('2025-01-01T00:00:00Z');
  const previous: DynamoClusterStatus = {
    phase: 'Creating',
    conditions: [
      {
        type: 'Degraded',
        status: 'False',
        reason: 'Healthy',
        message: 'no node is failing',
        lastTransitionTime: '2024-12-31T00:00:00Z',
      },
    ],
  };
  // A new one-node cluster whose only pod does not come up: Creating, were it not for what the pod says.
  const input = (o: Partial<StatusInput> = {}): StatusInput => ({
    cluster: 'demo',
    generation: 4,
    desiredNodes: 1,
    problems: [],
    replicas: 1,
    pods: [{ ordinal: 0, ready: false }],
    tokens: new Map(),
    previous,
    now,
    ...o,
  });

  it('makes the cluster Degraded, naming each failing pod and what it said', () => {
    const failures = nodeFailures('demo', [pod('demo-0', crashLooping(MISMATCH))]);
    expect(buildStatus(input()).phase).toBe('Creating');
    const status = buildStatus(input({ nodeFailures: failures }));
    expect(status.phase).toBe('Degraded');
    expect(status.conditions?.find((c) => c.type === 'Degraded')).toEqual({
      type: 'Degraded',
      status: 'True',
      reason: 'TokenMismatch',
      message: `demo-0 cannot start (restarted 3 times): ${MISMATCH}`,
      observedGeneration: 4,
      lastTransitionTime: now.toISOString(),
    });
    expect(failureEvent(failures[0]!)).toEqual({
      type: 'Warning',
      reason: 'TokenMismatch',
      message: `demo-0 cannot start: ${MISMATCH}`,
    });
  });

  it('says NodeFailing for different reasons, and keeps an Invalid or Decommissioning phase', () => {
    const failures = nodeFailures('demo', [
      pod('demo-0', crashLooping(MISMATCH)),
      pod('demo-1', crashLooping('removed_member: node demo-1 was removed')),
    ]);
    const degraded = (s: DynamoClusterStatus) => s.conditions?.find((c) => c.type === 'Degraded');
    expect(degraded(buildStatus(input({ nodeFailures: failures })))?.reason).toBe('NodeFailing');
    const record = { node: 'demo-1', ordinal: 1, state: 'leaving', startedAt: now.toISOString() };
    expect(
      buildStatus(input({ nodeFailures: failures, replicas: 2, desiredNodes: 1, decommissioning: record }))
        .phase,
    ).toBe('Decommissioning');
    expect(buildStatus(input({ nodeFailures: failures, problems: ['bad spec'] })).phase).toBe('Invalid');
    expect(buildStatus(input({ nodeFailures: [] }))).toEqual(buildStatus(input()));
  });
});
