import { describe, expect, it } from 'vitest';
import {
  checkCapacity,
  decideDecommission,
  type PodView,
  planScaling,
  type ScalingObservation,
} from '../../operator/src/scaling.js';

const ready = (count: number, unready: number[] = []): PodView[] =>
  Array.from({ length: count }, (_, ordinal) => ({ ordinal, ready: !unready.includes(ordinal) }));

const observe = (o: Partial<ScalingObservation>): ScalingObservation => ({
  cluster: 'demo',
  desiredNodes: 3,
  replicas: 3,
  pods: ready(3),
  minNodes: 3,
  ...o,
});

describe('planScaling', () => {
  it('creates the first node alone', () => {
    expect(planScaling(observe({ replicas: undefined, pods: [] }))).toEqual({
      action: 'scale-up',
      replicas: 1,
      node: 'demo-0',
    });
  });

  it('adds the next node only when every existing node is ready', () => {
    expect(planScaling(observe({ desiredNodes: 5, replicas: 3 }))).toEqual({
      action: 'scale-up',
      replicas: 4,
      node: 'demo-3',
    });
    const waiting = planScaling(observe({ desiredNodes: 5, replicas: 4, pods: ready(4, [3]) }));
    expect(waiting).toMatchObject({ action: 'wait', replicas: 4 });
    expect(waiting.action === 'wait' && waiting.reason).toMatch(
      /waiting for demo-3 to be ready before adding demo-4/,
    );
  });

  it('adds the next node only once the last one is up in the ring as a peer sees it, not just ready', () => {
    const ring = (states: Record<string, string>) => new Map(Object.entries(states));
    const joining = planScaling(
      observe({
        desiredNodes: 5,
        replicas: 4,
        pods: ready(4),
        ringStates: ring({ 'demo-0': 'up', 'demo-1': 'up', 'demo-2': 'up', 'demo-3': 'joining' }),
      }),
    );
    expect(joining).toMatchObject({ action: 'wait', replicas: 4 });
    expect(joining.action === 'wait' && joining.reason).toMatch(
      /waiting for demo-3 to be up in the ring as its peers see it \(joining\) before adding demo-4/,
    );
    // Ready but in no ring of the others (a ring of its own): never a reason to go on.
    const alone = planScaling(
      observe({ desiredNodes: 5, replicas: 4, pods: ready(4), ringStates: ring({ 'demo-0': 'up' }) }),
    );
    expect(alone.action === 'wait' && alone.reason).toMatch(/\(not a member\)/);
    const up = ring({ 'demo-0': 'up', 'demo-1': 'up', 'demo-2': 'up', 'demo-3': 'up' });
    expect(planScaling(observe({ desiredNodes: 5, replicas: 4, pods: ready(4), ringStates: up }))).toEqual({
      action: 'scale-up',
      replicas: 5,
      node: 'demo-4',
    });
    // No view could be read: readiness alone, as before.
    expect(planScaling(observe({ desiredNodes: 5, replicas: 4, pods: ready(4) })).action).toBe('scale-up');
  });

  it('is steady when the StatefulSet has spec.nodes replicas', () => {
    expect(planScaling(observe({}))).toEqual({ action: 'steady', replicas: 3 });
  });

  it('decommissions the highest ordinal first', () => {
    expect(planScaling(observe({ desiredNodes: 3, replicas: 5, pods: ready(5) }))).toEqual({
      action: 'begin-decommission',
      replicas: 5,
      node: 'demo-4',
      ordinal: 4,
    });
  });

  it('waits for every remaining node to be ready before starting a decommission, but not for the leaving one', () => {
    expect(planScaling(observe({ desiredNodes: 3, replicas: 5, pods: ready(5, [1]) }))).toMatchObject({
      action: 'wait',
      replicas: 5,
    });
    expect(planScaling(observe({ desiredNodes: 3, replicas: 5, pods: ready(5, [4]) }))).toMatchObject({
      action: 'begin-decommission',
      node: 'demo-4',
    });
  });

  it('refuses to go below replication.n', () => {
    const decision = planScaling(observe({ desiredNodes: 2, replicas: 3, minNodes: 3 }));
    expect(decision).toMatchObject({ action: 'refuse', replicas: 3 });
    expect(decision.action === 'refuse' && decision.reason).toMatch(/fewer than replication.n \(3\)/);
  });

  it('refuses when the remaining nodes cannot hold the data', () => {
    expect(
      planScaling(
        observe({ desiredNodes: 3, replicas: 4, pods: ready(4), capacity: { ok: false, reason: 'full' } }),
      ),
    ).toMatchObject({ action: 'refuse', reason: 'cannot decommission demo-3: full' });
  });

  it('keeps asking a recorded node to leave while the StatefulSet still has it, whatever spec.nodes says', () => {
    const record = { node: 'demo-4', ordinal: 4, startedAt: '2024-01-01T00:00:00Z' };
    for (const desiredNodes of [3, 4, 6]) {
      expect(
        planScaling(observe({ desiredNodes, replicas: 5, pods: ready(5), decommissioning: record })),
      ).toEqual({
        action: 'decommission',
        replicas: 5,
        node: 'demo-4',
        ordinal: 4,
      });
    }
  });

  it('finishes a decommission once the StatefulSet has dropped the node', () => {
    const record = { node: 'demo-4', ordinal: 4, startedAt: '2024-01-01T00:00:00Z' };
    expect(planScaling(observe({ replicas: 4, pods: ready(4), decommissioning: record }))).toEqual({
      action: 'finish-decommission',
      replicas: 4,
      node: 'demo-4',
      ordinal: 4,
    });
  });

  it('never shrinks past nodes above the recorded one', () => {
    const record = { node: 'demo-3', ordinal: 3, startedAt: '2024-01-01T00:00:00Z' };
    expect(planScaling(observe({ replicas: 6, pods: ready(6), decommissioning: record }))).toMatchObject({
      action: 'wait',
      replicas: 6,
    });
  });
});

describe('decideDecommission', () => {
  it('shrinks only once the node reports left', () => {
    expect(decideDecommission('demo-4', { status: { state: 'left' }, ringKnown: false })).toMatchObject({
      action: 'shrink',
    });
    for (const state of ['up', 'joining', 'leaving']) {
      expect(decideDecommission('demo-4', { status: { state }, ringKnown: false }).action).toBe('wait');
    }
  });

  it('reports progress while the node streams', () => {
    const decision = decideDecommission('demo-4', {
      status: { state: 'leaving', stream: { kind: 'decommission', rangesTotal: 12, rangesPending: 5 } },
      ringKnown: false,
    });
    expect(decision).toMatchObject({ action: 'wait' });
    expect(decision.reason).toMatch(/5 of 12 ranges pending/);
  });

  it('stops on a stream error', () => {
    const decision = decideDecommission('demo-4', {
      status: { state: 'leaving', stream: { error: 'peer demo-1 refused' } },
      ringKnown: false,
    });
    expect(decision).toMatchObject({ action: 'failed' });
    expect(decision.reason).toMatch(/peer demo-1 refused/);
  });

  it('drops an unreachable node only when the ring does not list it', () => {
    expect(decideDecommission('demo-4', { ringKnown: true, ringState: null }).action).toBe('shrink');
    expect(decideDecommission('demo-4', { ringKnown: true, ringState: 'removed' }).action).toBe('shrink');
    for (const state of ['up', 'down', 'joining', 'leaving']) {
      expect(decideDecommission('demo-4', { ringKnown: true, ringState: state }).action).toBe('failed');
    }
    expect(decideDecommission('demo-4', { ringKnown: false }).action).toBe('wait');
  });
});

describe('checkCapacity', () => {
  const GiB = 2 ** 30;
  it('passes when the data fits in 80% of the remaining volumes', () => {
    expect(checkCapacity([GiB, GiB, GiB, GiB], 3, 10 * GiB)).toEqual({ ok: true });
  });

  it('fails when it does not', () => {
    const verdict = checkCapacity([3 * GiB, 3 * GiB, 3 * GiB, 3 * GiB], 3, 4 * GiB);
    expect(verdict.ok).toBe(false);
    expect(verdict.reason).toMatch(/3 nodes would hold about 4.00 GiB each/);
  });

  it('passes when a node size is unknown', () => {
    expect(checkCapacity([GiB, undefined], 1, GiB)).toEqual({ ok: true });
  });
});
