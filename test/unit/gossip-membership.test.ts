import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { GossipMembership } from '../../node/src/membership/gossip.js';
import type { MemberEntry } from '../../node/src/membership/gossip-state.js';
import { generateTokens } from '../../node/src/ring/index.js';

const entry = (id: string, tokens: string[], status: MemberEntry['status'] = 'up'): MemberEntry => ({
  id,
  address: `${id}:7070`,
  tokens,
  status,
  generation: 1,
  version: 1,
});

function membership(self: MemberEntry): GossipMembership {
  return new GossipMembership({
    self,
    cluster: 'c',
    seeds: [],
    request: async () => ({}),
    intervalMs: 1000,
    phiThreshold: 8,
    log: pino({ level: 'silent' }),
  });
}

describe('gossip membership rings', () => {
  it('keeps joining members out of the serving ring and in the pending one', () => {
    const m = membership(entry('a', generateTokens('a', 8)));
    m.handle({ op: 'gossip.push', cluster: 'c', entries: [entry('b', generateTokens('b', 8), 'joining')] });
    expect(m.ring().members.map((x) => x.id)).toEqual(['a']);
    expect(m.pendingRing()?.members.map((x) => x.id)).toEqual(['a', 'b']);
    m.handle({
      op: 'gossip.push',
      cluster: 'c',
      entries: [{ ...entry('b', generateTokens('b', 8)), version: 2 }],
    });
    expect(m.ring().members.map((x) => x.id)).toEqual(['a', 'b']);
    expect(m.pendingRing()).toBeUndefined();
  });

  it('leaves a leaving member in the serving ring and out of the pending one', () => {
    const m = membership(entry('a', generateTokens('a', 8)));
    m.handle({ op: 'gossip.push', cluster: 'c', entries: [entry('b', generateTokens('b', 8), 'leaving')] });
    expect(m.ring().members.map((x) => x.id)).toEqual(['a', 'b']);
    expect(m.pendingRing()?.members.map((x) => x.id)).toEqual(['a']);
  });

  it('gives a token two members claim to the smaller id instead of failing to build a ring', () => {
    const shared = generateTokens('x', 2);
    const m = membership(entry('a', [shared[0]!, ...generateTokens('a', 3)]));
    m.handle({ op: 'gossip.push', cluster: 'c', entries: [entry('b', [shared[0]!, shared[1]!])] });
    const ring = m.ring();
    expect(ring.members.find((x) => x.id === 'a')?.tokens).toContain(shared[0]);
    expect(ring.members.find((x) => x.id === 'b')?.tokens).toEqual([shared[1]]);
  });

  it('keeps the same ring object across heartbeats, and makes a new one only when the ring changes', async () => {
    const m = membership(entry('a', generateTokens('a', 8)));
    const b = entry('b', generateTokens('b', 8));
    m.handle({ op: 'gossip.push', cluster: 'c', entries: [b] });
    const ring = m.ring();
    // Heartbeats: newer versions of b with the same place in the ring.
    for (let v = 2; v < 50; v++)
      m.handle({ op: 'gossip.push', cluster: 'c', entries: [{ ...b, version: v }] });
    await m.round();
    expect(m.ring()).toBe(ring);
    m.handle({
      op: 'gossip.push',
      cluster: 'c',
      entries: [{ ...b, tokens: generateTokens('b2', 8), version: 60 }],
    });
    expect(m.ring()).not.toBe(ring);
  });
});

describe('gossip membership across a restart', () => {
  const known = [entry('b', generateTokens('b', 8)), entry('c', generateTokens('c', 8))];
  const restarted = (seeds: string[], request: () => Promise<unknown>, knownMembers = known) =>
    new GossipMembership({
      self: entry('a', generateTokens('a', 8)),
      cluster: 'c',
      seeds,
      request,
      intervalMs: 1000,
      phiThreshold: 8,
      log: pino({ level: 'silent' }),
      known: knownMembers,
    });

  it('starts on the ring it knew and is not joined until another member answered, even as a seed', async () => {
    let answer = false;
    const m = restarted(['a:7070', 'b:7070'], async () => {
      if (!answer) throw new Error('unreachable');
      return { cluster: 'c', entries: [], digest: [] };
    });
    expect(m.ring().members.map((x) => x.id)).toEqual(['a', 'b', 'c']);
    expect(m.hasJoined).toBe(false);
    await m.join(100);
    expect(m.hasJoined).toBe(false);
    answer = true;
    await m.join(100);
    expect(m.hasJoined).toBe(true);
  });

  it('only a node designated to found the cluster (--bootstrap) is joined before it hears from anyone', () => {
    const bootstrap = (seeds: string[], founder: boolean) =>
      new GossipMembership({
        self: entry('a', generateTokens('a', 8)),
        cluster: 'c',
        seeds,
        request: async () => ({}),
        intervalMs: 1000,
        phiThreshold: 8,
        log: pino({ level: 'silent' }),
        bootstrap: founder,
      });
    expect(bootstrap(['a:7070'], true).hasJoined).toBe(true);
    expect(bootstrap(['a:7070'], true).mayBootstrap).toBe(true);
    // A seed, even the first one listed and listing only itself, that reaches nobody waits: no second ring.
    expect(bootstrap(['a:7070'], false).hasJoined).toBe(false);
    expect(bootstrap(['a:7070', 'b:7070'], false).hasJoined).toBe(false);
    expect(bootstrap(['b:7070', 'a:7070'], false).mayBootstrap).toBe(false);
  });

  it('a member that knew no other member (a cluster of one) serves at once after a restart; one that did waits', () => {
    const member = (knownMembers: typeof known) =>
      new GossipMembership({
        self: entry('a', generateTokens('a', 8)),
        cluster: 'c',
        seeds: ['a:7070'],
        request: async () => ({}),
        intervalMs: 1000,
        phiThreshold: 8,
        log: pino({ level: 'silent' }),
        known: knownMembers,
        wasMember: true,
      });
    expect(member([]).hasJoined).toBe(true);
    expect(member([{ ...known[0]!, status: 'removed' }]).hasJoined).toBe(true);
    expect(member(known).hasJoined).toBe(false);
  });
});
