import { describe, expect, it } from 'vitest';
import { allocateCluster, ownershipImbalance } from '../../node/src/ring/allocation.js';
import {
  assignTokens,
  parseAssignments,
  serializeAssignments,
} from '../../operator/src/token-assignments.js';

describe('token assignments', () => {
  it('round-trip through ConfigMap data', () => {
    const assignments = new Map(allocateCluster(3, 4, 3).map((m) => [m.id, m.tokens]));
    expect(parseAssignments(serializeAssignments(assignments))).toEqual(assignments);
    expect(parseAssignments(undefined).size).toBe(0);
    expect(parseAssignments({ 'demo-0': ' ' }).size).toBe(0);
  });

  it('gives only the nodes without tokens new ones, leaving the input and existing entries untouched', () => {
    const existing = assignTokens(new Map(), ['demo-0', 'demo-1', 'demo-2'], 16, 3);
    const snapshot = structuredClone(existing);
    const grown = assignTokens(existing, ['demo-0', 'demo-1', 'demo-2', 'demo-3', 'demo-4'], 16, 3);
    expect(existing).toEqual(snapshot);
    for (const [node, tokens] of existing) expect(grown.get(node)).toEqual(tokens);
    expect(grown.size).toBe(5);
    const members = [...grown].map(([id, tokens]) => ({ id, tokens }));
    expect(ownershipImbalance(members, 3)).toBeLessThan(0.1);
  });

  it('allocates like the allocator does when nodes are added one by one', () => {
    const nodes = ['node-0', 'node-1', 'node-2', 'node-3'];
    const assigned = assignTokens(new Map(), nodes, 8, 3);
    expect([...assigned].map(([id, tokens]) => ({ id, tokens }))).toEqual(allocateCluster(4, 8, 3));
  });
});
