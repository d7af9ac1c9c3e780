import { describe, expect, it } from 'vitest';
import { type RingView, Router } from '../../node/src/client/router.js';
import { generateTokens, hashKey, Ring } from '../../node/src/ring/index.js';

const ids = ['a', 'b', 'c', 'd'];
const view: RingView = {
  cluster: 'test',
  n: 2,
  members: ids.map((id) => ({ id, http: `http://${id}:8080`, state: 'up', tokens: generateTokens(id, 32) })),
};
const ring = new Ring(view.members.map((m) => ({ id: m.id, tokens: m.tokens! })));

describe('Router', () => {
  it("puts the key's preference list first, in ring order, then the other nodes", () => {
    const router = new Router(['http://a:8080'], 'preference-list');
    router.update(view);
    for (let i = 0; i < 50; i++) {
      const pref = ring.preferenceList(hashKey('b', `k${i}`), 2).map((id) => `http://${id}:8080`);
      const order = router.candidates('b', `k${i}`, 'write');
      expect(order.slice(0, 2)).toEqual(pref);
      expect(new Set(order).size).toBe(4);
    }
  });

  it('sends reads to any replica of the key, never first to a non-replica', () => {
    const router = new Router([], 'preference-list');
    router.update(view);
    const pref = ring.preferenceList(hashKey('b', 'hot'), 2).map((id) => `http://${id}:8080`);
    const firsts = new Set(Array.from({ length: 40 }, () => router.candidates('b', 'hot', 'read')[0]));
    expect([...firsts].sort()).toEqual([...pref].sort());
  });

  it('moves a node that just failed to the back until its suspicion expires', () => {
    let now = 0;
    const router = new Router([], 'preference-list', 1000, () => now);
    router.update(view);
    const first = router.candidates('b', 'k')[0]!;
    router.markFailed(first);
    expect(router.candidates('b', 'k')[0]).not.toBe(first);
    expect(router.candidates('b', 'k').at(-1)).toBe(first);
    now = 1001;
    expect(router.candidates('b', 'k')[0]).toBe(first);
  });

  it('falls back to the seeds before it has a ring view', () => {
    const router = new Router(['http://seed:1/'], 'preference-list');
    expect(router.hasRing).toBe(false);
    expect(router.candidates('b', 'k')).toEqual(['http://seed:1']);
  });

  it('spreads requests over every node in any-node mode', () => {
    const router = new Router([], 'any');
    router.update(view);
    const firsts = new Set(Array.from({ length: 8 }, () => router.candidates('b', 'same-key')[0]));
    expect(firsts.size).toBe(4);
  });

  it('skips members whose HTTP address is unknown', () => {
    const router = new Router(['http://a:8080'], 'preference-list');
    router.update({ ...view, members: view.members.map((m) => (m.id === 'b' ? { ...m, http: null } : m)) });
    for (let i = 0; i < 20; i++) {
      const pref = ring
        .preferenceList(hashKey('b', `k${i}`), 2)
        .filter((id) => id !== 'b')
        .map((id) => `http://${id}:8080`);
      const order = router.candidates('b', `k${i}`);
      expect(order).not.toContain('http://b:8080');
      expect(order.slice(0, pref.length)).toEqual(pref); // the ring still counts b
    }
  });
});
