// Token allocation for a joining node: pure, synchronous, deterministic; existing tokens never move.
// After Cassandra's ReplicationAwareTokenAllocator (CASSANDRA-7032): each new token greedily takes the split point
// that most evens out *replica* ownership (first n distinct nodes clockwise); racks are ignored.
import { Ring, type Token } from './ring.js';

/** The ring as it is (tokens that will not move), the node joining it, how many tokens it gets, and the replication factor. */
export interface TokenAllocationInput {
  existing: Array<{ id: string; tokens: string[] }>;
  newNode: string;
  tokens: number;
  n: number;
}

const RING_SIZE = 1n << 128n;
const RING_FLOAT = 2 ** 128;
/** A split point stays in the middle half of its arc: slivers would leave arcs too small to help later joins. */
const SPLIT_MIN = 0.25;
const SPLIT_MAX = 0.75;
/** Split points lie on a grid of 2^-20 of their arc. */
const SPLIT_STEPS = 2 ** 20;
const SPLIT_GRAIN = BigInt(SPLIT_STEPS);
/** Arcs narrower than 2^-32 of the ring are only split at their midpoint, so doubles always tell positions apart. */
const NARROW_ARC = 1n << 96n;
/** Weight of node balance against token balance: even token spans keep the ring easy to balance for later joins,
 * so the greedy pass weighs both alike (as Cassandra does); the refining pass then favours node balance. */
const GREEDY_NODE_WEIGHT = 1;
const REFINE_NODE_WEIGHT = 10;
/** Rounds of the refining pass (each moves every new token once): a node with few tokens balances in coarse
 * steps, where more rounds pay; with many, one round already lands within 0.1% and more would only cost time. */
const FEW_TOKENS = 64;
const REFINE_ROUNDS_FEW = 3;
const REFINE_ROUNDS_MANY = 1;
/** How many of the best-looking candidates are evaluated afresh before each placement. */
const LEADERS = 4;

/** A node taking part in the allocation; the mark fields are scratch space for walks (compared with stamps, never reset). */
interface Unit {
  /** Tokens the node has, or will have once allocation is done (the new node's full count from the start). */
  tokenCount: number;
  /** Replica ownership as a fraction of the ring; for the new node, unplaced tokens count as the ideal token span. */
  ownership: number;
  /** Position in the allocator's node list. */
  index: number;
  walkMark: number;
  followMark: number;
  deltaMark: number;
  /** Ownership change in the split being costed. */
  delta: number;
  /** Listed in the allocator's `moved`. */
  moved: boolean;
}

/** A token on the ring; the ring is a circular doubly linked list in position order. */
interface Vnode {
  pos: bigint;
  /** pos / 2^128, for ownership arithmetic (doubles are ample for fractions; positions stay exact in pos). */
  f: number;
  unit: Unit;
  prev: Vnode;
  next: Vnode;
  /** Replica ownership this token gives its node: the key space whose preference list reaches the node through it. */
  span: number;
}

/** A possible new token in the arc from host to next (the token that followed host when the candidate was made). */
interface Candidate {
  host: Vnode;
  next: Vnode;
  width: bigint;
  /** The best split point found by the latest evaluation. */
  pos: bigint;
  /** Index into the allocator's per-candidate arrays. */
  slot: number;
}

/** Clockwise distance from a to b as a fraction of the ring (a whole turn when a is b). */
function arc(a: Vnode, b: Vnode): number {
  if (a === b) return 1;
  const d = b.f - a.f;
  if (d > 0) return d;
  if (d < 0) return d + 1;
  return a.pos < b.pos ? 0 : 1;
}

function widthAfter(host: Vnode): bigint {
  const next = host.next;
  return next === host ? RING_SIZE : (next.pos - host.pos + RING_SIZE) % RING_SIZE;
}

const sq = (x: number): number => x * x;

function toToken(pos: bigint): Token {
  return pos.toString(16).padStart(32, '0');
}

/**
 * Places one node's tokens on a private copy of the ring. The cost it minimises, as in Cassandra, is the sum over
 * tokens of (span - ideal span)^2 plus a weight times the sum over nodes of (ownership - ideal)^2, each divided by
 * the node's token count squared. A split changes the spans of a few tokens only, so a candidate is costed by
 * walking a few tokens, not the ring. Each candidate's score is cached as its token terms plus the ownership
 * change it causes per node, and kept exact as node ownership shifts elsewhere, so ranking all is a cheap scan.
 */
class Allocator {
  private readonly units: Unit[];
  /** Ideal replica ownership of one token: n over all tokens once the new node has its own. */
  private readonly sigma: number;
  private nodeWeight = GREEDY_NODE_WEIGHT;
  private placed = 0;
  private readonly added: Vnode[] = [];
  private stamp = 0;
  /** Reused as the trial token when costing a split. */
  private readonly probe: Vnode;
  /** Nodes touched by the last costing, with their change in `delta`. */
  private readonly touched: Unit[] = [];
  /** Nodes whose ownership changed since the coefficients were last brought up to date. */
  private readonly moved: Unit[] = [];

  /** Per node, the cost of an ownership change d is linear[i] * d + square[i] * d^2. */
  private readonly linear: Float64Array;
  private readonly square: Float64Array;

  /** The live candidate of each arc, by the token the arc starts after; per slot, the cached parts of its score. */
  private readonly candidates = new Map<Vnode, Candidate>();
  private bySlot: (Candidate | undefined)[] = [];
  /** The score without the new node's term, which every placement changes and so is added at ranking time. */
  private rest = new Float64Array(0);
  private newDelta = new Float64Array(0);
  /** Up to n (node index, ownership change) pairs for the other nodes a candidate touches; -1 ends the list. */
  private otherUnit = new Int32Array(0);
  private otherDelta = new Float64Array(0);
  private generation = new Uint32Array(0);
  /** Per node: the (slot, generation) entries of candidates touching it; entries of re-evaluated slots are stale. */
  private readonly slotsOf: number[][];
  private readonly generationsOf: number[][];

  constructor(
    private readonly head: Vnode,
    units: readonly Unit[],
    private readonly newUnit: Unit,
    private readonly n: number,
  ) {
    this.units = [...units, newUnit];
    this.units.forEach((u, i) => {
      u.index = i;
    });
    this.linear = new Float64Array(this.units.length);
    this.square = new Float64Array(this.units.length);
    this.slotsOf = this.units.map(() => []);
    this.generationsOf = this.units.map(() => []);
    const total = this.units.reduce((sum, u) => sum + u.tokenCount, 0);
    this.sigma = n / total;
    this.probe = { pos: 0n, f: 0, unit: newUnit, prev: head, next: head, span: this.sigma };
    newUnit.ownership = newUnit.tokenCount * this.sigma;
    this.forEachVnode((v) => {
      v.span = this.spanOf(v);
      v.unit.ownership += v.span;
    });
  }

  /** Places all of the new node's tokens greedily, then moves each to its best place again; returns positions. */
  run(): bigint[] {
    this.rankAll();
    while (this.placed < this.newUnit.tokenCount) this.added.push(this.placeBest());
    this.nodeWeight = REFINE_NODE_WEIGHT;
    this.rankAll();
    const rounds = this.newUnit.tokenCount <= FEW_TOKENS ? REFINE_ROUNDS_FEW : REFINE_ROUNDS_MANY;
    for (let round = 0, moved = true; round < rounds && moved; round++) {
      moved = false;
      this.added.forEach((v, i) => {
        const host = v.prev;
        this.unlink(v);
        this.unrank(v);
        this.rerankAround(host);
        const replacement = this.placeBest();
        if (replacement.pos !== v.pos) moved = true;
        this.added[i] = replacement;
      });
    }
    return this.added.map((v) => v.pos);
  }

  private forEachVnode(visit: (v: Vnode) => void): void {
    let v = this.head;
    do {
      const next = v.next;
      visit(v);
      v = next;
    } while (v !== this.head);
  }

  /** Replica ownership through token t: back from t until its own node or the n-th other distinct node. */
  private spanOf(t: Vnode): number {
    const mark = ++this.stamp;
    let seen = 0;
    for (let k = t.prev; k !== t; k = k.prev) {
      const u = k.unit;
      if (u === t.unit) return arc(k, t);
      if (u.walkMark !== mark) {
        u.walkMark = mark;
        if (++seen === this.n) return arc(k, t);
      }
    }
    return 1;
  }

  /** The tokens after v whose span may depend on v being on the ring (v must be linked in). */
  private followers(v: Vnode): Vnode[] {
    const found: Vnode[] = [];
    const mark = ++this.stamp;
    // A token whose node already appears between v and it, or with n distinct nodes in between, never reaches v.
    for (let k = v.next; k !== v && found.length < this.n; k = k.next) {
      if (k.unit.followMark === mark) continue;
      k.unit.followMark = mark;
      found.push(k);
    }
    return found;
  }

  /** The cost of the new node's ownership changing by delta. */
  private newNodeCost(delta: number): number {
    const i = this.newUnit.index;
    return (this.linear[i] as number) * delta + (this.square[i] as number) * delta * delta;
  }

  /** Sets a node's cost coefficients for its current ownership and weight (the new node's grows as it is placed). */
  private setCoefficients(u: Unit): void {
    const weight =
      u === this.newUnit ? (this.nodeWeight * (this.placed + 1)) / u.tokenCount : this.nodeWeight;
    const square = weight / sq(u.tokenCount);
    this.linear[u.index] = 2 * square * (u.ownership - u.tokenCount * this.sigma);
    this.square[u.index] = square;
  }

  /** Brings coefficients up to date, and with them the cached scores of candidates touching nodes whose ownership moved. */
  private refreshCoefficients(): void {
    this.setCoefficients(this.newUnit);
    for (const u of this.moved) {
      u.moved = false;
      const i = u.index;
      const before = this.linear[i] as number;
      this.setCoefficients(u);
      // Only the linear coefficient depends on ownership; the square one changes with the weights (see rankAll).
      const dl = (this.linear[i] as number) - before;
      const slots = this.slotsOf[i] as number[];
      const generations = this.generationsOf[i] as number[];
      let kept = 0;
      for (let e = 0; e < slots.length; e++) {
        const slot = slots[e] as number;
        if (generations[e] !== this.generation[slot] || this.bySlot[slot] === undefined) continue;
        slots[kept] = slot;
        generations[kept] = generations[e] as number;
        kept++;
        for (let j = slot * this.n; j < (slot + 1) * this.n && (this.otherUnit[j] as number) >= 0; j++) {
          if (this.otherUnit[j] !== i) continue;
          this.rest[slot] = (this.rest[slot] as number) - dl * (this.otherDelta[j] as number);
          break;
        }
      }
      slots.length = kept;
      generations.length = kept;
    }
    this.moved.length = 0;
  }

  /** How much the cost grows (negative: shrinks) if the new node takes a token at f (pos) between host and next. */
  private costAt(host: Vnode, next: Vnode, f: number, pos: bigint): number {
    const v = this.probe;
    v.pos = pos;
    v.f = f;
    v.prev = host;
    v.next = next;
    host.next = v;
    next.prev = v;
    const mark = ++this.stamp;
    const touched = this.touched;
    const sigma = this.sigma;
    const newUnit = this.newUnit;
    const span = this.spanOf(v);
    let tokenCost = sq(span - sigma) / sq(newUnit.tokenCount);
    newUnit.deltaMark = mark;
    newUnit.delta = span - sigma;
    touched.length = 0;
    touched.push(newUnit);
    const followMark = ++this.stamp;
    let distinct = 0;
    // The followers walk of `followers`, inlined: this is the innermost loop of the allocator.
    for (let k = next; k !== v && distinct < this.n; k = k.next) {
      const u = k.unit;
      if (u.followMark === followMark) continue;
      u.followMark = followMark;
      distinct++;
      const after = this.spanOf(k);
      if (after === k.span) continue;
      tokenCost += (sq(after - sigma) - sq(k.span - sigma)) / sq(u.tokenCount);
      if (u.deltaMark !== mark) {
        u.deltaMark = mark;
        u.delta = 0;
        touched.push(u);
      }
      u.delta += after - k.span;
    }
    host.next = next;
    next.prev = host;
    let cost = tokenCost;
    for (const u of touched) {
      cost +=
        (this.linear[u.index] as number) * u.delta + (this.square[u.index] as number) * u.delta * u.delta;
    }
    return cost;
  }

  /** Moves cand to the best split point of its arc, caches its score there and returns it (higher is better). */
  private evaluate(cand: Candidate): number {
    const { host, next, width } = cand;
    let cost: number;
    if (width < NARROW_ARC) {
      cand.pos = (host.pos + width / 2n) % RING_SIZE;
      cost = this.costAt(host, next, Number(cand.pos) / RING_FLOAT, cand.pos);
    } else {
      // Probes at least 2^-34 of the ring from any token never tie with one in doubles, so their pos goes unread.
      const span = Number(width) / RING_FLOAT;
      const at = (t: number): number => {
        const f = host.f + t * span;
        return f >= 1 ? f - 1 : f;
      };
      // Every span a split changes is linear in the split point, so the cost is a quadratic in it: three probes fit it.
      const c1 = this.costAt(host, next, at(0.25), host.pos);
      const c2 = this.costAt(host, next, at(0.5), host.pos);
      const c3 = this.costAt(host, next, at(0.75), host.pos);
      const a = 8 * (c1 - 2 * c2 + c3);
      const b = 2 * (c3 - c1) - a;
      const best =
        a > 0 ? Math.min(SPLIT_MAX, Math.max(SPLIT_MIN, -b / (2 * a))) : c1 < c3 ? SPLIT_MIN : SPLIT_MAX;
      const step = Math.round(best * SPLIT_STEPS);
      cand.pos = (host.pos + (width * BigInt(step)) / SPLIT_GRAIN) % RING_SIZE;
      cost = this.costAt(host, next, at(step / SPLIT_STEPS), host.pos);
    }
    this.cache(cand.slot, cost);
    return -cost;
  }

  /** Caches the last costing as the score of slot, split so that node ownership shifting elsewhere can update it. */
  private cache(slot: number, cost: number): void {
    const generation = (this.generation[slot] ?? 0) + 1;
    this.generation[slot] = generation;
    let other = slot * this.n;
    const end = other + this.n;
    for (const u of this.touched) {
      if (u === this.newUnit) continue;
      this.otherUnit[other] = u.index;
      this.otherDelta[other] = u.delta;
      other++;
      this.slotsOf[u.index]?.push(slot);
      this.generationsOf[u.index]?.push(generation);
    }
    if (other < end) this.otherUnit[other] = -1;
    this.newDelta[slot] = this.newUnit.delta;
    this.rest[slot] = -(cost - this.newNodeCost(this.newUnit.delta));
  }

  /** Takes the best candidate: ranks all by cached score, re-evaluates the leaders and takes the best of those. */
  private placeBest(): Vnode {
    this.refreshCoefficients();
    const i = this.newUnit.index;
    const linear = this.linear[i] as number;
    const square = this.square[i] as number;
    const leaders: number[] = [];
    const scores: number[] = [];
    for (let slot = 0; slot < this.bySlot.length; slot++) {
      if (this.bySlot[slot] === undefined) continue;
      const d = this.newDelta[slot] as number;
      const score = (this.rest[slot] as number) - (linear * d + square * d * d);
      if (leaders.length === LEADERS && score <= (scores[LEADERS - 1] as number)) continue;
      let at = Math.min(leaders.length, LEADERS - 1);
      for (; at > 0 && score > (scores[at - 1] as number); at--) {
        leaders[at] = leaders[at - 1] as number;
        scores[at] = scores[at - 1] as number;
      }
      leaders[at] = slot;
      scores[at] = score;
    }
    let best: Candidate | undefined;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const slot of leaders) {
      const cand = this.bySlot[slot] as Candidate;
      const score = this.evaluate(cand);
      if (score > bestScore || (score === bestScore && best !== undefined && cand.host.pos < best.host.pos)) {
        best = cand;
        bestScore = score;
      }
    }
    if (best === undefined) throw new Error('token allocation: no room left on the ring for another token');
    const v = this.link(best.host, best.next, best.pos);
    this.rerankAround(v);
    return v;
  }

  /** Puts a new-node token at pos between host and next, updating every span and ownership it changes. */
  private link(host: Vnode, next: Vnode, pos: bigint): Vnode {
    const v: Vnode = {
      pos,
      f: Number(pos) / RING_FLOAT,
      unit: this.newUnit,
      prev: host,
      next,
      span: this.sigma,
    };
    host.next = v;
    next.prev = v;
    this.placed++;
    v.span = this.spanOf(v);
    this.newUnit.ownership += v.span - this.sigma;
    for (const k of this.followers(v)) this.respan(k);
    return v;
  }

  /** Takes a new-node token off the ring again (its share goes back to the ideal placeholder). */
  private unlink(v: Vnode): void {
    const followers = this.followers(v);
    v.prev.next = v.next;
    v.next.prev = v.prev;
    this.placed--;
    this.newUnit.ownership += this.sigma - v.span;
    for (const k of followers) this.respan(k);
  }

  private respan(k: Vnode): void {
    const span = this.spanOf(k);
    if (span === k.span) return;
    const u = k.unit;
    u.ownership += span - k.span;
    k.span = span;
    if (!u.moved && u !== this.newUnit) {
      u.moved = true;
      this.moved.push(u);
    }
  }

  /** Ranks a candidate for every arc afresh (the cost weights changed). */
  private rankAll(): void {
    for (const u of this.moved) u.moved = false;
    this.moved.length = 0;
    this.units.forEach((u) => {
      this.setCoefficients(u);
      (this.slotsOf[u.index] as number[]).length = 0;
      (this.generationsOf[u.index] as number[]).length = 0;
    });
    this.candidates.clear();
    this.bySlot = [];
    this.forEachVnode((v) => this.rank(v));
  }

  /** Forgets the candidate of the arc after host (host is leaving the ring). */
  private unrank(host: Vnode): void {
    const cand = this.candidates.get(host);
    if (cand === undefined) return;
    this.bySlot[cand.slot] = undefined;
    this.candidates.delete(host);
  }

  /** Re-ranks the arcs whose candidates read spans that a change at center altered: n + 1 distinct nodes either side. */
  private rerankAround(center: Vnode): void {
    this.refreshCoefficients();
    let from = center;
    let mark = ++this.stamp;
    for (let distinct = 0; from.prev !== center && distinct <= this.n; ) {
      from = from.prev;
      if (from.unit.walkMark !== mark) {
        from.unit.walkMark = mark;
        distinct++;
      }
    }
    let to = center;
    mark = ++this.stamp;
    for (let distinct = 0; to.next !== from && distinct <= this.n; ) {
      to = to.next;
      if (to.unit.walkMark !== mark) {
        to.unit.walkMark = mark;
        distinct++;
      }
    }
    for (let k = from; ; k = k.next) {
      this.rank(k);
      if (k === to) break;
    }
  }

  /** (Re)ranks the candidate splitting the arc after host, if that arc is wide enough to split. */
  private rank(host: Vnode): void {
    const next = host.next;
    let cand = this.candidates.get(host);
    if (cand !== undefined && cand.next !== next) {
      // The arc was split, or merged with the next one.
      this.unrank(host);
      cand = undefined;
    }
    if (cand === undefined) {
      const width = widthAfter(host);
      if (width < 2n) return;
      cand = { host, next, width, pos: host.pos, slot: this.bySlot.length };
      this.candidates.set(host, cand);
      this.bySlot.push(cand);
      this.reserve(this.bySlot.length);
    }
    this.evaluate(cand);
  }

  /** Grows the per-slot arrays to hold at least `slots` entries. */
  private reserve(slots: number): void {
    if (slots <= this.rest.length) return;
    const grow = <T extends Float64Array | Int32Array | Uint32Array>(
      old: T,
      make: (size: number) => T,
      per: number,
    ): T => {
      const next = make((2 * slots + 64) * per);
      next.set(old);
      return next;
    };
    this.rest = grow(this.rest, (size) => new Float64Array(size), 1);
    this.newDelta = grow(this.newDelta, (size) => new Float64Array(size), 1);
    this.generation = grow(this.generation, (size) => new Uint32Array(size), 1);
    this.otherUnit = grow(this.otherUnit, (size) => new Int32Array(size), this.n);
    this.otherDelta = grow(this.otherDelta, (size) => new Float64Array(size), this.n);
  }
}

function newUnit(tokenCount: number): Unit {
  return {
    tokenCount,
    ownership: 0,
    index: 0,
    walkMark: 0,
    followMark: 0,
    deltaMark: 0,
    delta: 0,
    moved: false,
  };
}

function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`token allocation: ${name} must be an integer >= 1, got ${value}`);
  }
}

/** Tokens for newNode; deterministic for the same input. The first node of an empty ring gets evenly spaced tokens. */
export function allocateTokens(input: TokenAllocationInput): string[] {
  const { existing, newNode, tokens: count, n } = input;
  assertPositiveInteger('n', n);
  assertPositiveInteger('tokens', count);
  if (existing.some((m) => m.id === newNode)) {
    throw new Error(`token allocation: node '${newNode}' is already a member of the ring`);
  }
  if (existing.length === 0) {
    const step = RING_SIZE / BigInt(count);
    return Array.from({ length: count }, (_, i) => toToken(BigInt(i) * step));
  }
  // The Ring constructor rejects duplicate ids, members without tokens, malformed tokens and shared tokens.
  new Ring(existing);

  const units = existing.map((m) => newUnit(m.tokens.length));
  const vnodes = existing
    .flatMap((m, i) => m.tokens.map((token) => ({ pos: BigInt(`0x${token}`), unit: units[i] as Unit })))
    .sort((a, b) => (a.pos < b.pos ? -1 : 1))
    .map(({ pos, unit }) => ({ pos, f: Number(pos) / RING_FLOAT, unit, span: 0 }) as Vnode);
  vnodes.forEach((v, i) => {
    v.next = vnodes[(i + 1) % vnodes.length] as Vnode;
    v.prev = vnodes[(i + vnodes.length - 1) % vnodes.length] as Vnode;
  });
  // With no more than n nodes everyone replicates everything, so balance for as many replicas as there are
  // nodes instead: that lays tokens out so the ring stays balanced as it grows past n.
  const replicas = Math.min(n, existing.length);
  const positions = new Allocator(vnodes[0] as Vnode, units, newUnit(count), replicas).run();
  return positions.sort((a, b) => (a < b ? -1 : 1)).map(toToken);
}

/** max/min replica ownership over nodes minus 1 (0 = perfectly balanced). */
export function ownershipImbalance(members: Array<{ id: string; tokens: string[] }>, n: number): number {
  const shares = [...new Ring(members).ownership(n).values()];
  return Math.max(...shares) / Math.min(...shares) - 1;
}

/** Allocates for nodes added one by one (ids node-0..node-(count-1)), returning every node's tokens. */
export function allocateCluster(
  count: number,
  tokensPerNode: number,
  n: number,
): Array<{ id: string; tokens: string[] }> {
  const members: Array<{ id: string; tokens: string[] }> = [];
  for (let i = 0; i < count; i++) {
    const id = `node-${i}`;
    members.push({
      id,
      tokens: allocateTokens({ existing: members, newNode: id, tokens: tokensPerNode, n }),
    });
  }
  return members;
}
