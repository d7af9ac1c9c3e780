import { createHash } from 'node:crypto';

/** A 128-bit ring position: 32 lowercase hex characters (so string comparison = numeric comparison). */
export type Token = string;

/** A physical node and the ring positions it claims; `rack` names its failure domain, if known. */
export interface RingMember {
  id: string;
  tokens: readonly Token[];
  rack?: string;
}

const TOKEN_PATTERN = /^[0-9a-f]{32}$/;
const RING_SIZE = 1n << 128n;

function md5Hex(input: string): Token {
  return createHash('md5').update(input).digest('hex');
}

/** Ring position of a key: MD5 of `${bucket}/${key}` as 32 lowercase hex chars. */
export function hashKey(bucket: string, key: string): Token {
  return md5Hex(`${bucket}/${key}`);
}

/** Deterministic default tokens for a node: MD5 of `${nodeId}#${i}` for i in 0..count-1. */
export function generateTokens(nodeId: string, count: number): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < count; i++) tokens.push(md5Hex(`${nodeId}#${i}`));
  return tokens;
}

/** True when s is a valid token (exactly 32 lowercase hex chars). */
export function isToken(s: string): boolean {
  return TOKEN_PATTERN.test(s);
}

function assertCount(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be an integer >= 1, got ${n}`);
}

/** An immutable consistent-hashing ring; a membership change builds a new Ring. */
export class Ring {
  readonly members: readonly RingMember[];
  /** All tokens in ascending order; owners[i] is the index in `members` of the node owning tokens[i]. */
  private readonly tokens: Token[];
  private readonly owners: number[];
  /** Preference lists by n, then by token index: safe to share because the ring never changes. */
  private readonly memo = new Map<number, (readonly string[] | undefined)[]>();

  /** Throws Error with a clear message on: no members, duplicate member ids, a member with no tokens, an invalid token, the same token owned twice. */
  constructor(members: readonly RingMember[]) {
    if (members.length === 0) throw new Error('ring: at least one member is required');
    const ids = new Set<string>();
    const ownerOf = new Map<Token, string>();
    const entries: { token: Token; owner: number }[] = [];
    members.forEach((member, owner) => {
      if (ids.has(member.id)) throw new Error(`ring: duplicate member id '${member.id}'`);
      ids.add(member.id);
      if (member.tokens.length === 0) throw new Error(`ring: member '${member.id}' has no tokens`);
      for (const token of member.tokens) {
        if (!isToken(token)) {
          throw new Error(
            `ring: member '${member.id}' has invalid token '${token}' (need 32 lowercase hex chars)`,
          );
        }
        const previous = ownerOf.get(token);
        if (previous !== undefined) {
          throw new Error(`ring: token ${token} is owned by both '${previous}' and '${member.id}'`);
        }
        ownerOf.set(token, member.id);
        entries.push({ token, owner });
      }
    });
    entries.sort((a, b) => (a.token < b.token ? -1 : 1));
    this.members = members.map((m) => ({ ...m, tokens: [...m.tokens] }));
    this.tokens = entries.map((e) => e.token);
    this.owners = entries.map((e) => e.owner);
  }

  /** Number of distinct physical nodes. */
  get size(): number {
    return this.members.length;
  }

  /** Ids of the first n distinct physical nodes clockwise from position (owner of the first token >= position, wrapping past the top to the smallest token). Rack-aware: when members carry racks, nodes in racks not yet used are preferred; when racks run out, remaining slots are filled with other distinct nodes in clockwise order. Returns fewer than n ids when the ring has fewer nodes. */
  preferenceList(position: Token, n: number): string[] {
    assertCount(n);
    if (!isToken(position))
      throw new RangeError(`position must be a token (32 lowercase hex chars), got '${position}'`);
    // A copy, so a caller that edits its list cannot corrupt the memo.
    return [...this.listAt(this.firstTokenAtOrAfter(position), n)];
  }

  /** For each member id, the fraction (0..1) of the ring's key space for which it is in the preference list of size n (n=1 gives primary ownership). Fractions for n=1 sum to 1. */
  ownership(n = 1): Map<string, number> {
    assertCount(n);
    const arcs = new Map<string, bigint>(this.members.map((m) => [m.id, 0n]));
    const last = this.tokens.length - 1;
    for (let i = 0; i <= last; i++) {
      // Token i serves the arc (previous token, token i]; the first token's arc wraps from the last.
      const prev = BigInt(`0x${this.tokens[i === 0 ? last : i - 1]}`);
      const here = BigInt(`0x${this.tokens[i]}`);
      const arc = last === 0 ? RING_SIZE : (here - prev + RING_SIZE) % RING_SIZE;
      for (const id of this.listAt(i, n)) arcs.set(id, (arcs.get(id) ?? 0n) + arc);
    }
    const fractions = new Map<string, number>();
    for (const [id, arc] of arcs) fractions.set(id, Number(arc) / Number(RING_SIZE));
    return fractions;
  }

  /** Index of the first token >= position, or 0 when position is past the largest token. */
  private firstTokenAtOrAfter(position: Token): number {
    let lo = 0;
    let hi = this.tokens.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.tokens[mid] as Token) < position) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.tokens.length ? 0 : lo;
  }

  /** The memoized preference list of size n starting at token index start. */
  private listAt(start: number, n: number): readonly string[] {
    // Lists longer than the ring are all the same, so they share one memo slot.
    const want = Math.min(n, this.members.length);
    let byStart = this.memo.get(want);
    if (byStart === undefined) {
      byStart = new Array(this.tokens.length);
      this.memo.set(want, byStart);
    }
    let list = byStart[start];
    if (list === undefined) {
      list = this.walk(start, want);
      byStart[start] = list;
    }
    return list;
  }

  /** Walk clockwise from token index start, picking `want` distinct nodes, spreading over racks first. */
  private walk(start: number, want: number): string[] {
    const picked: number[] = [];
    // Nodes passed over only because their rack was taken, in clockwise order: the fill-ins once racks run out.
    const skipped: number[] = [];
    const seen = new Set<number>();
    const usedRacks = new Set<string>();
    const count = this.tokens.length;
    for (let step = 0; step < count && picked.length < want && seen.size < this.members.length; step++) {
      const owner = this.owners[(start + step) % count] as number;
      if (seen.has(owner)) continue;
      seen.add(owner);
      // A node with no rack shares no known failure domain, so it never blocks or is blocked.
      const rack = (this.members[owner] as RingMember).rack;
      if (rack !== undefined && usedRacks.has(rack)) {
        skipped.push(owner);
        continue;
      }
      if (rack !== undefined) usedRacks.add(rack);
      picked.push(owner);
    }
    for (const owner of skipped) {
      if (picked.length >= want) break;
      picked.push(owner);
    }
    return picked.map((owner) => (this.members[owner] as RingMember).id);
  }
}
