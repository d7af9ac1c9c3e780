/**
 * Dotted version vector sets (Almeida et al.), a port of dvvset.erl from basho/riak_core:
 * the causal history of one key plus its concurrent values (siblings), as pure immutable values.
 */

/** One stored version of a value. A tombstone is a Sibling with deleted=true and empty value. */
export interface Sibling {
  value: Buffer;
  contentType: string;
  /** ms since epoch */
  lastModified: number;
  deleted: boolean;
  /** ms since epoch after which the value reads as absent; 0 = never. Set once when written, so replicas agree. */
  expiresAt: number;
}

/** One entry per coordinating node id: history I:1..counter seen; values are the values of the newest dots, newest first (values.length <= counter). time = ms of the entry's last event (used for pruning). */
export interface Entry {
  id: string;
  counter: number;
  values: Sibling[];
  time: number;
}

/** entries sorted by id (string <), no duplicate ids. anonymous = values not yet bound to a dot (from a client write before update, or kept by sync of concurrent clocks). */
export interface Clock {
  entries: Entry[];
  anonymous: Sibling[];
}

/** The causal context a client sees: [id, counter] pairs sorted by id. */
export type VersionVector = Array<[string, number]>;

/**
 * Largest counter a clock, context or peer message may carry (2^48: far beyond any actor's writes, far
 * below 2^53, where increments stop being exact and a key would be bricked).
 */
export const MAX_COUNTER = 2 ** 48;

// Code-unit order, not localeCompare: every replica and the context codec must agree on it.
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function copyEntry(e: Entry): Entry {
  return { id: e.id, counter: e.counter, values: [...e.values], time: e.time };
}

/** Total order on siblings: lastModified, then value bytes, then contentType, then deleted. */
export function compareSiblings(a: Sibling, b: Sibling): number {
  if (a.lastModified !== b.lastModified) return a.lastModified < b.lastModified ? -1 : 1;
  const byValue = Buffer.compare(a.value, b.value);
  if (byValue !== 0) return byValue;
  const byType = compareIds(a.contentType, b.contentType);
  if (byType !== 0) return byType;
  if (a.expiresAt !== b.expiresAt) return a.expiresAt < b.expiresAt ? -1 : 1;
  return Number(a.deleted) - Number(b.deleted);
}

/** True when both siblings are the same version (same bytes, content type, timestamp and deletion flag). */
export function siblingEquals(a: Sibling, b: Sibling): boolean {
  return compareSiblings(a, b) === 0;
}

/** A clock with no causal history holding one value: a client write without a context (dvvset:new/1). */
export function fresh(value: Sibling): Clock {
  return { entries: [], anonymous: [value] };
}

/** A client write made with context vv, before a coordinator binds it to a dot (dvvset:new/2). */
export function withContext(vv: VersionVector, value: Sibling): Clock {
  // Sorted defensively, as in Erlang, since a context may come from anywhere; duplicate ids
  // would break the one-entry-per-id invariant, so the larger counter wins.
  const sorted = [...vv].sort((x, y) => compareIds(x[0], y[0]));
  const entries: Entry[] = [];
  for (const [id, counter] of sorted) {
    const last = entries[entries.length - 1];
    if (last !== undefined && last.id === id) last.counter = Math.max(last.counter, counter);
    else entries.push({ id, counter, values: [], time: 0 });
  }
  return { entries, anonymous: [value] };
}

// Union of anonymous values, sorted newest first so that sync(a, b) and sync(b, a) are identical
// (replicas must converge to the same bytes, or anti-entropy would see them as different forever).
function unionSiblings(a: Sibling[], b: Sibling[]): Sibling[] {
  const all = [...a, ...b].sort((x, y) => compareSiblings(y, x));
  return all.filter((s, i) => i === 0 || !siblingEquals(s, all[i - 1]!));
}

/** Counts what a merge detected; pass one to sync to learn of dot collisions. */
export interface SyncStats {
  /**
   * One per dot that named two different values on the two sides: the value that lost the dot to the
   * other (kept, as an anonymous sibling).
   */
  collided: Sibling[];
}

// dvvset:merge/5: both sides know dots I:1..max(n1, n2); a value survives only if neither side
// has already discarded its dot as obsolete, i.e. the newest max(n1 - |l1|, n2 - |l2|) dots are gone.
// A dot both sides hold must carry the same value. If it does not, the dot was minted twice (a bug or
// lost state; see actors.ts); neither value is dropped: the greater stays bound to the dot, the other
// goes to `collided`, which sync keeps as an anonymous sibling.
function mergeEntry(e1: Entry, e2: Entry, collided: Sibling[]): Entry {
  const time = Math.max(e1.time, e2.time);
  const [hi, lo] = e1.counter >= e2.counter ? [e1, e2] : [e2, e1];
  const keep =
    hi.counter - hi.values.length >= lo.counter - lo.values.length
      ? hi.values.length
      : hi.counter - lo.counter + lo.values.length;
  const values = hi.values.slice(0, keep);
  // lo's value j is dot lo.counter - j, which is hi's value hi.counter - (lo.counter - j).
  const shift = hi.counter - lo.counter;
  for (let j = 0; j < lo.values.length; j++) {
    const i = shift + j;
    if (i >= values.length) break;
    const ours = values[i]!;
    const theirs = lo.values[j]!;
    const order = compareSiblings(ours, theirs);
    if (order === 0) continue;
    values[i] = order > 0 ? ours : theirs;
    collided.push(order > 0 ? theirs : ours);
  }
  return { id: hi.id, counter: hi.counter, values, time };
}

function syncEntries(a: Entry[], b: Entry[], collided: Sibling[]): Entry[] {
  const out: Entry[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const order = compareIds(x.id, y.id);
    if (order < 0) {
      out.push(copyEntry(x));
      i++;
    } else if (order > 0) {
      out.push(copyEntry(y));
      j++;
    } else {
      out.push(mergeEntry(x, y, collided));
      i++;
      j++;
    }
  }
  for (; i < a.length; i++) out.push(copyEntry(a[i]!));
  for (; j < b.length; j++) out.push(copyEntry(b[j]!));
  return out;
}

/**
 * Merge two clocks of the same key: union of histories, dropping values that either side knows are
 * obsolete (dvvset:sync/2). A dot holding different values on the two sides keeps both (see mergeEntry)
 * and is counted in stats.
 */
export function sync(a: Clock, b: Clock, stats?: SyncStats): Clock {
  let anonymous: Sibling[];
  if (less(a, b)) anonymous = [...b.anonymous];
  else if (less(b, a)) anonymous = [...a.anonymous];
  else anonymous = unionSiblings(a.anonymous, b.anonymous);
  const collided: Sibling[] = [];
  const entries = syncEntries(a.entries, b.entries, collided);
  if (collided.length > 0) {
    stats?.collided.push(...collided);
    anonymous = unionSiblings(anonymous, collided);
  }
  return { entries, anonymous };
}

/**
 * Gives each collided value (anonymous after sync) a dot of its own, minted by newActor: a write made
 * with the context of a read that showed it then supersedes it, as it does any sibling. Anonymous
 * values are otherwise dropped only by a strictly newer history, which a write may never bring. A value
 * some entry already holds (another replica bound it first) is not bound twice.
 */
export function bindCollided(c: Clock, collided: Sibling[], newActor: () => string, now: number): Clock {
  if (collided.length === 0) return c;
  const isCollided = (s: Sibling) => collided.some((x) => siblingEquals(s, x));
  const bound = (s: Sibling) => c.entries.some((e) => e.values.some((v) => siblingEquals(v, s)));
  let entries = c.entries.map(copyEntry);
  for (const value of c.anonymous) {
    if (isCollided(value) && !bound(value)) entries = event(entries, newActor(), value, now);
  }
  return { entries, anonymous: c.anonymous.filter((s) => !isCollided(s)) };
}

/** sync folded over a list of clocks; undefined for an empty list (dvvset:sync/1). */
export function syncAll(clocks: Clock[], stats?: SyncStats): Clock | undefined {
  const [first, ...rest] = clocks;
  if (first === undefined) return undefined;
  return rest.reduce((acc, c) => sync(acc, c, stats), {
    entries: first.entries.map(copyEntry),
    anonymous: [...first.anonymous],
  });
}

// dvvset:event/3: the new value becomes the newest dot of id.
function event(entries: Entry[], id: string, value: Sibling, now: number): Entry[] {
  const out: Entry[] = [];
  let placed = false;
  for (const e of entries) {
    if (!placed && e.id === id) {
      out.push({ id, counter: e.counter + 1, values: [value, ...e.values], time: now });
      placed = true;
    } else {
      if (!placed && compareIds(e.id, id) > 0) {
        out.push({ id, counter: 1, values: [value], time: now });
        placed = true;
      }
      out.push(copyEntry(e));
    }
  }
  if (!placed) out.push({ id, counter: 1, values: [value], time: now });
  return out;
}

/** Apply a client write (a clock from fresh/withContext) on the replica `id` holding `local`; the result descends both (dvvset:update/3, or update/2 when local is undefined). */
export function update(client: Clock, local: Clock | undefined, id: string, now: number): Clock {
  const [value, ...extra] = client.anonymous;
  if (value === undefined || extra.length > 0) {
    throw new Error(
      `dvvset.update: client clock must hold exactly one value, got ${client.anonymous.length}`,
    );
  }
  if (local === undefined) return { entries: event(client.entries, id, value, now), anonymous: [] };
  // The client's history is synced without its value, so the new value gets a dot of its own
  // while the replica's anonymous values that the client did not supersede remain.
  const merged = sync({ entries: client.entries, anonymous: [] }, local);
  return { entries: event(merged.entries, id, value, now), anonymous: merged.anonymous };
}

/** The version vector of the clock's causal history, to hand to clients as their context (dvvset:join/1). */
export function join(c: Clock): VersionVector {
  return c.entries.map((e): [string, number] => [e.id, e.counter]);
}

/** All current values: anonymous first, then each entry's values (dvvset:values/1). */
export function values(c: Clock): Sibling[] {
  return [...c.anonymous, ...c.entries.flatMap((e) => e.values)];
}

// dvvset:greater/3 over entry lists sorted by id; `strict` records whether a strictly-greater entry was seen.
function greater(a: Entry[], b: Entry[]): boolean {
  let strict = false;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined) return true;
    if (x === undefined) return false;
    const order = compareIds(x.id, y.id);
    if (order === 0) {
      if (x.counter < y.counter) return false;
      if (x.counter > y.counter) strict = true;
      i++;
      j++;
    } else if (order < 0) {
      strict = true;
      i++;
    } else {
      return false;
    }
  }
  return strict;
}

/** True when a's causal history is strictly contained in b's, so a's values are obsolete (dvvset:less/2). */
export function less(a: Clock, b: Clock): boolean {
  return greater(b.entries, a.entries);
}

/** True when both clocks have the same entries (ids and counters), ignoring values. */
export function equalHistory(a: Clock, b: Clock): boolean {
  return (
    a.entries.length === b.entries.length &&
    a.entries.every((e, i) => e.id === b.entries[i]!.id && e.counter === b.entries[i]!.counter)
  );
}

const sameSiblings = (a: Sibling[], b: Sibling[]) =>
  a.length === b.length && a.every((s, i) => siblingEquals(s, b[i]!));

/**
 * True when a and b are the same version: the same history and the same values, byte for byte (each
 * entry's values in dot order, anonymous values as a set). Equal history alone is not enough: a dot
 * minted twice names two values, and replicas holding one each must be seen to differ.
 */
export function sameVersion(a: Clock, b: Clock): boolean {
  if (!equalHistory(a, b)) return false;
  if (!a.entries.every((e, i) => sameSiblings(e.values, b.entries[i]!.values))) return false;
  if (a.anonymous.length !== b.anonymous.length) return false;
  return sameSiblings([...a.anonymous].sort(compareSiblings), [...b.anonymous].sort(compareSiblings));
}

/**
 * The values a client sees: values(c) with exact duplicates dropped. One client write can be bound to
 * two dots when a coordinator attempt timed out after its replica applied it and the next attempt
 * applied it again; both copies carry the same bytes and timestamp, and a read shows them once (a write
 * with that read's context supersedes both).
 */
export function distinctValues(c: Clock): Sibling[] {
  const all = values(c);
  if (all.length < 2) return all;
  return all.filter((s, i) => all.findIndex((t) => siblingEquals(s, t)) === i);
}

/**
 * True when a holds everything b carries, so merging b into a would add nothing: every dot of b is in
 * a's history (its value kept or superseded there), and b's anonymous values are in a unless a's
 * history is strictly newer.
 */
export function covers(a: Clock, b: Clock): boolean {
  const counters = new Map(a.entries.map((e) => [e.id, e.counter]));
  if (!b.entries.every((e) => (counters.get(e.id) ?? 0) >= e.counter)) return false;
  if (b.anonymous.length === 0 || less(b, a)) return true;
  const held = values(a);
  return b.anonymous.every((s) => held.some((t) => siblingEquals(s, t)));
}

/** Number of values (siblings, tombstones included) the clock holds. */
export function valueCount(c: Clock): number {
  return c.anonymous.length + c.entries.reduce((n, e) => n + e.values.length, 0);
}

/** True when a >= b pointwise (ids missing from a count as 0). */
export function descends(a: VersionVector, b: VersionVector): boolean {
  const counters = new Map(a);
  return b.every(([id, n]) => (counters.get(id) ?? 0) >= n);
}

/** Keep only the single newest value (by lastModified, ties broken deterministically by comparing value bytes then contentType), as dvvset:lww: for buckets with conflict 'lww'. */
export function lww(c: Clock): Clock {
  let best: { value: Sibling; entryId: string | undefined } | undefined;
  for (const e of c.entries) {
    for (const [i, v] of e.values.entries()) {
      if (best === undefined || compareSiblings(v, best.value) > 0) {
        best = { value: v, entryId: i === 0 ? e.id : undefined };
      }
    }
  }
  for (const v of c.anonymous) {
    if (best === undefined || compareSiblings(v, best.value) > 0) best = { value: v, entryId: undefined };
  }
  const winner = best;
  // As in Erlang: the winner stays bound to its dot when it is its entry's newest value; otherwise
  // it becomes anonymous over the whole history (dvvset:reconcile), which no entry misrepresents.
  const entries = c.entries.map((e) => ({
    ...copyEntry(e),
    values: winner !== undefined && winner.entryId === e.id ? [winner.value] : [],
  }));
  const anonymous = winner !== undefined && winner.entryId === undefined ? [winner.value] : [];
  return { entries, anonymous };
}

/**
 * Bound the clock size: while entries.length > maxEntries, drop the oldest (by time) entries that hold no
 * values, are older than now - minAgeMs and that keep(id) does not protect (a coordinator protects the
 * actors it may still mint dots for: forgetting one would restart its counter). Entries holding values are
 * never dropped (no value is lost by pruning).
 */
export function prune(
  c: Clock,
  opts: { maxEntries: number; minAgeMs: number; now: number; keep?: (id: string) => boolean },
): Clock {
  const excess = c.entries.length - opts.maxEntries;
  const copy = (): Clock => ({ entries: c.entries.map(copyEntry), anonymous: [...c.anonymous] });
  if (excess <= 0) return copy();
  const cutoff = opts.now - opts.minAgeMs;
  // Forgetting a young entry would make a write still in flight look concurrent with its own
  // successors; forgetting an old empty one only risks a spurious sibling, as with Riak's vclock pruning.
  const doomed = c.entries
    .filter((e) => e.values.length === 0 && e.time < cutoff && !opts.keep?.(e.id))
    .sort((x, y) => x.time - y.time || compareIds(x.id, y.id))
    .slice(0, excess);
  if (doomed.length === 0) return copy();
  const drop = new Set(doomed.map((e) => e.id));
  return { entries: c.entries.filter((e) => !drop.has(e.id)).map(copyEntry), anonymous: [...c.anonymous] };
}
