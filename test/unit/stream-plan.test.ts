import { describe, expect, it } from 'vitest';
import { generateTokens, hashKey, Ring } from '../../node/src/ring/index.js';
import { leaveTargets, planJoin, planJoinForAll, sendsToJoiner } from '../../node/src/streaming/plan.js';

const member = (id: string) => ({ id, tokens: generateTokens(id, 16) });
const ring = (...ids: string[]) => new Ring(ids.map(member));
const positions = Array.from({ length: 2000 }, (_, i) => hashKey('b', `k${i}`));
const allUp = () => true;

describe('stream plan', () => {
  it('a join into a larger ring pulls only from the nodes it displaces, one sender per key', () => {
    const old = ring('a', 'b', 'c', 'd');
    const next = ring('a', 'b', 'c', 'd', 'e');
    const plan = planJoin(old, next, 'e', 3, allUp, false);
    expect(plan.mode).toBe('displaced');
    expect(plan.sources).not.toContain('e');
    for (const p of positions) {
      const senders = ['a', 'b', 'c', 'd'].filter((s) => sendsToJoiner(old, next, p, 3, 'e', s, 'displaced'));
      // The new node gets each of its keys from exactly the replica it replaces, and nothing else.
      expect(senders.length).toBe(next.preferenceList(p, 3).includes('e') ? 1 : 0);
      for (const s of senders) {
        expect(old.preferenceList(p, 3)).toContain(s);
        expect(next.preferenceList(p, 3)).not.toContain(s);
      }
    }
  });

  it('pulls from every up replica when a displaced node is down, when rebuilding, or when the ring was smaller than n', () => {
    const old = ring('a', 'b', 'c', 'd');
    const next = ring('a', 'b', 'c', 'd', 'e');
    const down = planJoin(old, next, 'e', 3, (id) => id !== 'b', false);
    expect(down.mode).toBe('all');
    expect(down.sources).not.toContain('b');
    expect(planJoin(old, next, 'e', 3, allUp, true).mode).toBe('all');
    const small = planJoin(ring('a', 'b'), ring('a', 'b', 'c'), 'c', 3, allUp, false);
    expect(small).toMatchObject({ mode: 'all', sources: ['a', 'b'] });
    // In 'all' mode every holder of a key sends it: no key depends on one replica being complete.
    for (const p of positions.slice(0, 200)) {
      const senders = ['a', 'b'].filter((s) =>
        sendsToJoiner(ring('a', 'b'), ring('a', 'b', 'c'), p, 3, 'c', s, 'all'),
      );
      expect(senders).toEqual(['a', 'b']);
    }
  });

  it('every range of the joining node is covered by a source', () => {
    const plan = planJoin(ring('a', 'b', 'c'), ring('a', 'b', 'c', 'd'), 'd', 3, allUp, false);
    expect(plan.ranges.size).toBeGreaterThan(0);
    for (const sources of plan.ranges.values()) expect(sources.length).toBeGreaterThan(0);
  });

  it('a leaving node sends each key to exactly the replicas that did not hold it', () => {
    const old = ring('a', 'b', 'c', 'd', 'e');
    const next = ring('a', 'b', 'd', 'e');
    for (const p of positions) {
      const before = old.preferenceList(p, 3);
      const targets = leaveTargets(old, next, p, 3);
      if (!before.includes('c')) expect(targets).toEqual([]);
      // After the move every replica of the key either had it or was sent it.
      for (const id of next.preferenceList(p, 3))
        expect(before.includes(id) || targets.includes(id)).toBe(true);
    }
  });

  it('plans a join for every bucket’s n: each key of an n=2 and an n=5 bucket has its sender among the sources', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    const old = ring(...ids);
    const next = ring(...ids, 'g');
    const plan = planJoinForAll(old, next, 'g', [3, 2, 5], allUp, false);
    expect(plan.mode).toBe('displaced');
    for (const n of [2, 3, 5]) {
      for (const p of positions) {
        if (!next.preferenceList(p, n).includes('g')) continue;
        const senders = ids.filter((s) => sendsToJoiner(old, next, p, n, 'g', s, plan.mode));
        expect(senders.length).toBeGreaterThan(0);
        for (const s of senders) expect(plan.sources).toContain(s);
      }
    }
    // Planning for the default n alone leaves out the arcs only the n=5 bucket gives the new node.
    expect(plan.ranges.size).toBeGreaterThan(planJoin(old, next, 'g', 3, allUp, false).ranges.size);
  });
});
