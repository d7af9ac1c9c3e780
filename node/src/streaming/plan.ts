/**
 * Which keys move where when a node joins or leaves: pure functions of two rings, the one serving now
 * (`old`) and the one after the move (`next`). Both sides of a stream evaluate the same rules on the
 * same rings (sent with each request), so they agree even while gossip is still spreading.
 *
 * Join (pull): the joining node asks sources for the keys it will replicate. By default only the nodes
 * it displaces (in the old list of a key, not in the new one) send, as Cassandra's consistent range
 * movement does: the new replica takes over the displaced replica's copy, so every acknowledged write
 * keeps as many copies as it had. When a displaced node is down, when some range displaces nobody (the
 * ring was smaller than n), or when the node rebuilds a range it held before (a wiped disk), every up
 * holder of the range sends: more bytes, but no single replica has to be complete.
 *
 * Leave (push): the leaving node sends each of its keys to the nodes that replicate it once it is gone
 * and did not before.
 */
import { Ring, type RingMember, type Token } from '../ring/index.js';

/** A ring as sent over the wire: its members and their tokens. */
export type RingDesc = RingMember[];

/** Who sends what to a joining node: 'displaced' (sources send keys they stop replicating) or 'all'. */
export type JoinMode = 'displaced' | 'all';

export interface JoinPlan {
  mode: JoinMode;
  /** Nodes to pull from. */
  sources: string[];
  /** Token arcs (by end token) of the next ring the joining node replicates, with the sources covering each. */
  ranges: Map<Token, string[]>;
}

export const describeRing = (ring: Ring): RingDesc =>
  ring.members.map((m) => ({ id: m.id, tokens: [...m.tokens], ...(m.rack ? { rack: m.rack } : {}) }));

/** Rings built from descriptions, cached: each page of a stream sends the same two. */
const cache = new Map<string, Ring>();
export function ringFromDesc(desc: RingDesc): Ring {
  const key = JSON.stringify(desc);
  let ring = cache.get(key);
  if (!ring) {
    ring = new Ring(desc);
    if (cache.size >= 8) cache.delete(cache.keys().next().value as string);
    cache.set(key, ring);
  }
  return ring;
}

/** Token arcs (named by their end token) where node is among the first n of next's preference lists. */
function arcsOf(ring: Ring, node: string, n: number): Token[] {
  const arcs: Token[] = [];
  for (const m of ring.members)
    for (const t of m.tokens) if (ring.preferenceList(t, n).includes(node)) arcs.push(t);
  return arcs.sort();
}

/**
 * The sources a joining node pulls from. `isUp` says whether a member is reachable now; `rebuilding`
 * is true when the node held these ranges before (same id rejoining after losing its data).
 */
export function planJoin(
  old: Ring,
  next: Ring,
  self: string,
  n: number,
  isUp: (id: string) => boolean,
  rebuilding: boolean,
): JoinPlan {
  const arcs = arcsOf(next, self, n);
  const displacedBy = new Map<Token, string[]>();
  let displacedOnly = !rebuilding;
  for (const end of arcs) {
    const before = old.preferenceList(end, n).filter((id) => id !== self);
    const after = next.preferenceList(end, n);
    const displaced = before.filter((id) => !after.includes(id));
    if (displaced.length === 0 || !displaced.every(isUp)) displacedOnly = false;
    displacedBy.set(end, displaced);
  }
  const ranges = new Map<Token, string[]>();
  for (const end of arcs) {
    const holders = displacedOnly
      ? (displacedBy.get(end) ?? [])
      : [...new Set([...old.preferenceList(end, n), ...next.preferenceList(end, n)])].filter(
          (id) => id !== self && isUp(id),
        );
    ranges.set(end, holders);
  }
  const sources = [...new Set([...ranges.values()].flat())].sort();
  return { mode: displacedOnly ? 'displaced' : 'all', sources, ranges };
}

/**
 * The join plan when buckets replicate with different n (every distinct n in use): the union of each
 * n's arcs and sources. Sources filter each key by its own bucket's n (sendsToJoiner), so pulling from
 * the union sends each key exactly where it belongs. When any n needs every holder to send, all do.
 */
export function planJoinForAll(
  old: Ring,
  next: Ring,
  self: string,
  ns: number[],
  isUp: (id: string) => boolean,
  rebuilding: boolean,
): JoinPlan {
  const distinct = [...new Set(ns)].sort((a, b) => a - b);
  let plans = distinct.map((n) => planJoin(old, next, self, n, isUp, rebuilding));
  if (plans.some((p) => p.mode === 'all') && plans.some((p) => p.mode === 'displaced'))
    plans = distinct.map((n) => planJoin(old, next, self, n, isUp, true));
  const ranges = new Map<Token, string[]>();
  for (const plan of plans)
    for (const [end, holders] of plan.ranges)
      ranges.set(end, [...new Set([...(ranges.get(end) ?? []), ...holders])].sort());
  const sources = [...new Set(plans.flatMap((p) => p.sources))].sort();
  return { mode: plans[0]?.mode ?? 'displaced', sources, ranges };
}

/** Whether source must send the key at position (its bucket replicated n times) to a joining target. */
export function sendsToJoiner(
  old: Ring,
  next: Ring,
  position: Token,
  n: number,
  target: string,
  source: string,
  mode: JoinMode,
): boolean {
  const after = next.preferenceList(position, n);
  if (!after.includes(target)) return false;
  const before = old.preferenceList(position, n);
  if (mode === 'displaced') return before.includes(source) && !after.includes(source);
  return before.includes(source) || after.includes(source);
}

/** The nodes a leaving node must send the key at position to: its replicas in next that were not in old. */
export function leaveTargets(old: Ring, next: Ring, position: Token, n: number): string[] {
  const before = old.preferenceList(position, n);
  return next.preferenceList(position, n).filter((id) => !before.includes(id));
}

/** Token arcs (by end token) a leaving node replicates in old: what it must hand over. */
export function leavingArcs(old: Ring, self: string, n: number): Token[] {
  return arcsOf(old, self, n);
}
