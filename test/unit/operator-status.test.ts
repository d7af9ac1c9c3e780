import { describe, expect, it } from 'vitest';
import { buildStatus, type StatusInput, setCondition } from '../../operator/src/status.js';

const NOW = new Date('2024-05-01T12:00:00Z');
const LATER = new Date('2024-05-01T12:05:00Z');

const input = (o: Partial<StatusInput>): StatusInput => ({
  cluster: 'demo',
  generation: 4,
  desiredNodes: 3,
  problems: [],
  replicas: 3,
  pods: [0, 1, 2].map((ordinal) => ({ ordinal, ready: true })),
  tokens: new Map([
    ['demo-0', ['a'.repeat(32)]],
    ['demo-1', ['b'.repeat(32)]],
    ['demo-2', ['c'.repeat(32)]],
  ]),
  previous: undefined,
  now: NOW,
  ...o,
});

const condition = (status: ReturnType<typeof buildStatus>, type: string) =>
  status.conditions?.find((c) => c.type === type);

describe('setCondition', () => {
  it('moves lastTransitionTime only when the status changes', () => {
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'A', message: 'a' }, NOW);
    const same = setCondition(first, { type: 'Ready', status: 'False', reason: 'B', message: 'b' }, LATER);
    expect(same[0]).toMatchObject({ reason: 'B', lastTransitionTime: NOW.toISOString() });
    const flipped = setCondition(same, { type: 'Ready', status: 'True', reason: 'C', message: 'c' }, LATER);
    expect(flipped[0]?.lastTransitionTime).toBe(LATER.toISOString());
    expect(flipped).toHaveLength(1);
  });
});

describe('buildStatus', () => {
  it('reports a ready cluster with its members, observedGeneration and all five conditions', () => {
    const status = buildStatus(input({}));
    expect(status).toMatchObject({ phase: 'Ready', nodes: 3, readyNodes: 3, observedGeneration: 4 });
    expect(status.members).toEqual([
      { name: 'demo-0', tokens: 1, state: 'Ready' },
      { name: 'demo-1', tokens: 1, state: 'Ready' },
      { name: 'demo-2', tokens: 1, state: 'Ready' },
    ]);
    expect(status.conditions?.map((c) => `${c.type}=${c.status}`).sort()).toEqual([
      'Decommissioning=False',
      'Degraded=False',
      'Ready=True',
      'Scaling=False',
      'Valid=True',
    ]);
  });

  it('reports an invalid spec with Valid=False and the reasons', () => {
    const status = buildStatus(input({ problems: ['spec.replication.r must be from 1 to n (3), got 4'] }));
    expect(status.phase).toBe('Invalid');
    expect(condition(status, 'Valid')).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(condition(status, 'Valid')?.message).toMatch(/got 4/);
  });

  it('reports scaling up, without calling the joining node degraded', () => {
    const status = buildStatus(
      input({
        desiredNodes: 5,
        replicas: 4,
        pods: [0, 1, 2, 3].map((ordinal) => ({ ordinal, ready: ordinal < 3 })),
      }),
    );
    expect(status.phase).toBe('Scaling');
    expect(condition(status, 'Scaling')).toMatchObject({ status: 'True', reason: 'ScalingUp' });
    expect(condition(status, 'Degraded')?.status).toBe('False');
    expect(condition(status, 'Ready')?.status).toBe('False');
  });

  it('keeps reporting a scale-up until its last node is ready, instead of calling that node degraded', () => {
    const first = buildStatus(
      input({
        desiredNodes: 3,
        replicas: 3,
        pods: [0, 1, 2].map((o) => ({ ordinal: o, ready: o < 2 })),
        decision: { action: 'scale-up', replicas: 3, node: 'demo-2' },
      }),
    );
    expect(condition(first, 'Scaling')?.reason).toBe('ScalingUp');
    const next = buildStatus(
      input({
        previous: first,
        pods: [0, 1, 2].map((o) => ({ ordinal: o, ready: o < 2 })),
        decision: { action: 'steady', replicas: 3 },
      }),
    );
    expect(next.phase).toBe('Scaling');
    expect(condition(next, 'Degraded')?.status).toBe('False');
    const done = buildStatus(input({ previous: next, decision: { action: 'steady', replicas: 3 } }));
    expect(done.phase).toBe('Ready');
    expect(condition(done, 'Scaling')?.status).toBe('False');
  });

  it('reports a node that stopped being ready as Degraded', () => {
    const status = buildStatus(
      input({ pods: [0, 1, 2].map((ordinal) => ({ ordinal, ready: ordinal !== 1 })) }),
    );
    expect(status.phase).toBe('Degraded');
    expect(condition(status, 'Degraded')).toMatchObject({ status: 'True', message: 'not ready: demo-1' });
  });

  it('reports a decommission in progress, and a stalled one as Degraded', () => {
    const record = {
      node: 'demo-3',
      ordinal: 3,
      startedAt: NOW.toISOString(),
      state: 'leaving',
      rangesPending: 2,
    };
    const pods = [0, 1, 2, 3].map((ordinal) => ({ ordinal, ready: true }));
    const going = buildStatus(input({ replicas: 4, pods, decommissioning: record }));
    expect(going.phase).toBe('Decommissioning');
    expect(condition(going, 'Decommissioning')).toMatchObject({ status: 'True', reason: 'Decommissioning' });
    expect(condition(going, 'Decommissioning')?.message).toMatch(/demo-3.*leaving, 2 ranges pending/);
    expect(going.members?.find((m) => m.name === 'demo-3')?.state).toBe('Leaving');
    expect(going.decommissioning).toEqual(record);

    const stalled = buildStatus(
      input({
        replicas: 4,
        pods,
        decommissioning: record,
        decommissionProblem: 'decommission of demo-3 failed: x',
      }),
    );
    expect(condition(stalled, 'Decommissioning')).toMatchObject({
      status: 'True',
      reason: 'DecommissionStalled',
    });
    expect(condition(stalled, 'Degraded')).toMatchObject({ status: 'True', reason: 'DecommissionStalled' });
  });

  it('says in the Scaling condition what a scale-down waits for', () => {
    const reason = 'waiting for demo-1 to be ready before decommissioning demo-3';
    const status = buildStatus(
      input({
        replicas: 4,
        pods: [0, 1, 2, 3].map((ordinal) => ({ ordinal, ready: ordinal !== 1 })),
        decision: { action: 'wait', replicas: 4, afterMs: 5_000, reason },
      }),
    );
    expect(condition(status, 'Scaling')).toMatchObject({
      status: 'True',
      reason: 'ScalingDown',
      message: reason,
    });
  });

  it('writes decommissioning: null when there is none, so a merge patch clears it', () => {
    expect(buildStatus(input({})).decommissioning).toBeNull();
  });
});
