/**
 * The durable queue of hints for hinted handoff: writes this node accepted for an owner that was down,
 * kept in LevelDB until they are delivered to it (oldest first, rate-limited) or outlive the window.
 * Opening reads nothing that grows with the hints: they are counted per target in the background (a
 * target's deliveries wait for its count), so a node with millions of hints listens at once.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Packr } from 'msgpackr';
import { KeyedMutex } from '../storage/keyed-mutex.js';
import type { KeySpace } from '../storage/store.js';

/** A write held for its intended owner; delivered as a 'merge' of obj into bucket/key on target. */
export interface Hint {
  /** Node id of the intended owner (no NUL characters). */
  target: string;
  bucket: string;
  key: string;
  /** The encoded object (storage/codec.ts), as the 'merge' replica message carries it. */
  obj: Buffer;
  /** When the hint was written, in ms since the epoch; it expires windowMs later. */
  createdAt: number;
}

export interface HintQueueOptions {
  /** How long an undelivered hint is kept before it is dropped, in ms. Default 3 hours. */
  windowMs?: number;
  /** Hints sent per second to one target (token bucket). Default 100. */
  ratePerSecond?: number;
  /** Hints that may go to a target back to back after a pause (the bucket's capacity). Default 1. */
  burst?: number;
  /** Clock in ms, for createdAt, expiry and the rate limit. Default Date.now. */
  now?: () => number;
  /** Waits ms, rejecting when signal aborts; injectable so the rate limit is testable without real time. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * Whether dropping a hint past the window loses nothing: some true replica of its key already holds
   * everything it carries. A hint that is not redundant is kept (and still delivered) past the window,
   * since it may be the last copy of an acknowledged write. Default: every hint is (age alone expires).
   */
  redundant?: (hint: Hint) => Promise<boolean>;
  /** Called with the number of hints dropped for outliving the window. */
  onExpired?: (n: number) => void;
  /** Called as hints are delivered to target. */
  onDelivered?: (target: string, n: number) => void;
}

export interface DeliverOptions {
  /** Send at most this many hints in this pass (expired ones do not count). */
  maxHints?: number;
  /** Stops the pass before the next send (also while waiting for the rate limit). */
  signal?: AbortSignal;
}

export interface DeliveryResult {
  delivered: number;
  expired: number;
  /** A send rejected; that hint and every later one are still queued. */
  failed: boolean;
  /** What the failed send rejected with. */
  error?: unknown;
}

export const DEFAULT_HINT_WINDOW_MS = 3 * 60 * 60 * 1000;
export const DEFAULT_HINT_RATE_PER_SECOND = 100;

const FORMAT = 1;
const packr = new Packr({ useRecords: false, moreTypes: false });
const SEP = '\u0000';
// 16 digits hold any safe integer, so string order of the padded numbers is numeric order.
const pad = (n: number) => n.toString().padStart(16, '0');
const PAGE = 256;
const EXPIRE_BATCH = 1000;
/** Expiry runs once a minute, or once a window when the window is shorter (tests). */
const EXPIRE_EVERY_MS = 60_000;
/** Redundancy checks (reads of the key's replicas) per target and expiry pass; the rest wait. */
const MAX_CHECKS_PER_PASS = 1000;

/** Key of a hint: grouped by target, then oldest first; seq keeps hints of the same ms apart and in order. */
const hintKey = (target: string, createdAt: number, seq: number) =>
  `${target}${SEP}${pad(createdAt)}${SEP}${pad(seq)}`;
/** The [gte, lt) range holding every hint of target (targets hold no NUL, so no other target's keys fall in). */
const targetRange = (target: string) => ({ gte: `${target}${SEP}`, lt: `${target}\u0001` });

function parseKey(k: string): { target: string; createdAt: number; seq: number } {
  const second = k.lastIndexOf(SEP);
  const first = k.lastIndexOf(SEP, second - 1);
  if (first <= 0) throw new Error(`malformed hint key ${JSON.stringify(k)}`);
  return {
    target: k.slice(0, first),
    createdAt: Number(k.slice(first + 1, second)),
    seq: Number(k.slice(second + 1)),
  };
}

function decodeHint(k: string, bytes: Buffer): Hint {
  const [format, bucket, key, obj] = packr.unpack(bytes) as [number, string, string, Uint8Array];
  if (format !== FORMAT) throw new Error(`unknown hint format ${format} in ${JSON.stringify(k)}`);
  const { target, createdAt } = parseKey(k);
  return { target, bucket, key, obj: Buffer.isBuffer(obj) ? obj : Buffer.from(obj), createdAt };
}

function checkTarget(target: string): void {
  if (target === '' || target.includes(SEP)) throw new TypeError('hint target must be non-empty without NUL');
}

const defaultSleep = async (ms: number, signal?: AbortSignal) => {
  await delay(ms, undefined, signal ? { signal } : undefined);
};

/** The key space of the node's database that holds the hint queue (node.ts opens the queue over it). */
export const HINTS_KEY_SPACE = 'h:';

/**
 * Hints per target in one key space. Each hint is deleted only after its send resolved, so a crash or a
 * failed send can deliver a hint twice but never lose one; delivery is a merge, so twice is harmless.
 * Hints are never coalesced: two hints for one key are both delivered, and the receiver merges them.
 */
export class HintQueue {
  /** Hints per target: exact for the targets counted (all once loaded), adds and removals since otherwise. */
  private readonly counts = new Map<string, number>();
  /** Targets being counted: their adds wait, so each stored hint is counted exactly once. */
  private readonly gates = new Map<string, Promise<void>>();
  /** Per target, adds issued to LevelDB and not landed yet; a count waits until there are none. */
  private readonly adding = new Map<string, number>();
  private readonly landed = new Map<string, () => void>();
  /** Per target, the look at its newest stored hint that the first add makes (seq continues past it). */
  private readonly newestSeen = new Map<string, Promise<void>>();
  private loading: Promise<void> = Promise.resolve();
  private counted = false;
  private closing = false;
  /** Deliveries and expiry of one target run one at a time, so a hint is deleted (and counted) once. */
  private readonly locks = new KeyedMutex();
  /** Deliveries called (queued or running) per target. */
  private readonly delivering = new Map<string, number>();
  /** Per target, the earliest time of its next send (virtual scheduling form of the token bucket). */
  private readonly nextSendAt = new Map<string, number>();
  private seq = 0;
  /** Per target, when its expiry last ran on the delivery path. */
  private readonly lastExpired = new Map<string, number>();
  /** Per target, hints past the window kept at the last expiry pass because they were not redundant. */
  private readonly overdueCounts = new Map<string, number>();
  private readonly windowMs: number;
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  private constructor(
    private readonly space: KeySpace,
    private readonly opts: HintQueueOptions,
  ) {
    this.windowMs = opts.windowMs ?? DEFAULT_HINT_WINDOW_MS;
    this.rate = opts.ratePerSecond ?? DEFAULT_HINT_RATE_PER_SECOND;
    this.burst = opts.burst ?? 1;
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? defaultSleep;
    if (!(this.windowMs > 0)) throw new RangeError('windowMs must be positive');
    if (!(this.rate > 0) || !Number.isFinite(this.rate))
      throw new RangeError('ratePerSecond must be positive');
    if (!(this.burst >= 1)) throw new RangeError('burst must be at least 1');
  }

  /**
   * Opens the queue over space (store.keySpace(HINTS_KEY_SPACE)) without reading its hints: they are counted
   * in the background (loaded()). Until then pending() shows the targets counted so far and the hints
   * added since; every stored hint is still delivered, once its target is counted.
   */
  static async open(space: KeySpace, opts: HintQueueOptions = {}): Promise<HintQueue> {
    const queue = new HintQueue(space, opts);
    queue.loading = queue.load();
    queue.loading.catch(() => undefined); // reported to whoever awaits loaded()
    return queue;
  }

  /** Resolves once every hint stored before the open is counted (pending() is then exact). */
  loaded(): Promise<void> {
    return this.loading;
  }

  /** Whether every stored hint is counted. */
  get isLoaded(): boolean {
    return this.counted;
  }

  /** Whether close() was called (a count it stopped rejects loaded()). */
  get closed(): boolean {
    return this.closing;
  }

  /** Stops the count if it still runs (before the store closes); resolves once it no longer reads. */
  async close(): Promise<void> {
    this.closing = true;
    await this.loading.catch(() => undefined);
  }

  /**
   * Finds the targets, seeking from one target's range to the next, and counts each one's hints. The
   * counts run side by side: one waits for a delivery to its target that is running (under the same
   * lock), which may take long, but not for another target's.
   */
  private async load(): Promise<void> {
    const counts: Array<Promise<void>> = [];
    try {
      let from = '';
      while (!this.closing) {
        let next: string | undefined;
        for await (const k of this.space.keys({ gte: from, limit: 1 })) next = k;
        if (next === undefined) break;
        const { target } = parseKey(next);
        counts.push(this.locks.run(target, () => this.countTarget(target)));
        from = targetRange(target).lt;
      }
    } finally {
      await Promise.allSettled(counts);
    }
    await Promise.all(counts);
    if (this.closing) throw new Error('hint queue closed before its hints were counted');
    this.counted = true;
  }

  /**
   * Counts target's stored hints (under its lock, so no delivery or expiry removes any meanwhile): new
   * adds wait, the ones in flight land first, and the count replaces what adds and removals made of it.
   */
  private async countTarget(target: string): Promise<void> {
    let open!: () => void;
    this.gates.set(target, new Promise<void>((resolve) => (open = resolve)));
    try {
      if (this.adding.has(target)) await new Promise<void>((resolve) => this.landed.set(target, resolve));
      let n = 0;
      for await (const _ of this.space.keys(targetRange(target))) {
        if (this.closing) throw new Error('hint queue closed while counting');
        n++;
      }
      if (n > 0) this.counts.set(target, n);
      else this.forget(target, this.counts.get(target) ?? 0);
    } finally {
      this.gates.delete(target);
      open();
    }
  }

  /** Once per target: the sequence continues past its newest stored hint, so a hint of that ms sorts after. */
  private seeNewest(target: string): Promise<void> {
    let seen = this.newestSeen.get(target);
    if (!seen) {
      seen = (async () => {
        for await (const k of this.space.keys({ ...targetRange(target), reverse: true, limit: 1 }))
          this.seq = Math.max(this.seq, parseKey(k).seq + 1);
      })();
      this.newestSeen.set(target, seen);
      seen.catch(() => this.newestSeen.delete(target)); // the next add looks again
    }
    return seen;
  }

  /** Stores a hint; resolves once it is in LevelDB's log. createdAt defaults to now. */
  async add(hint: Omit<Hint, 'createdAt'> & { createdAt?: number }): Promise<void> {
    checkTarget(hint.target);
    const createdAt = hint.createdAt ?? this.now();
    if (!Number.isSafeInteger(createdAt) || createdAt < 0) {
      throw new RangeError('hint createdAt must be a non-negative integer of ms');
    }
    const target = hint.target;
    await this.seeNewest(target);
    for (let gate = this.gates.get(target); gate; gate = this.gates.get(target)) await gate;
    // From here to the put nothing waits, so a count that starts later sees this add in flight.
    // A hint stored by an earlier run may hold any key of an older ms (a clock set back, an explicit
    // createdAt): a key in use is never taken, so no stored hint is overwritten.
    let k = hintKey(target, createdAt, this.seq++);
    while (this.space.get(k) !== undefined) k = hintKey(target, createdAt, this.seq++);
    // Counted before the write lands, so a delivery that sees and deletes it never drives the count below 0.
    this.counts.set(target, (this.counts.get(target) ?? 0) + 1);
    this.adding.set(target, (this.adding.get(target) ?? 0) + 1);
    try {
      await this.space.put(k, packr.pack([FORMAT, hint.bucket, hint.key, hint.obj]));
    } catch (err) {
      this.forget(target, 1);
      throw err;
    } finally {
      const left = (this.adding.get(target) ?? 1) - 1;
      if (left > 0) this.adding.set(target, left);
      else {
        this.adding.delete(target);
        this.landed.get(target)?.();
        this.landed.delete(target);
      }
    }
  }

  /** Hints queued per target (targets with none are absent); see open() for before loaded(). */
  pending(): Map<string, number> {
    return new Map(this.counts);
  }

  /** How often expiry runs (per target on the delivery path, and the delivery loop's sweep). */
  get expiryIntervalMs(): number {
    return Math.min(EXPIRE_EVERY_MS, this.windowMs);
  }

  /** Hints past the window that were kept, per target, as the last expiry pass found them. */
  overdue(): Map<string, number> {
    return new Map(this.overdueCounts);
  }

  /**
   * Sends target's hints oldest first, at most ratePerSecond, deleting each once send resolves; drops
   * (without sending) those past the window. Stops at the first failed send, leaving that hint queued.
   * Hints added meanwhile are sent in the same pass when newer than the last one sent, else in the next.
   */
  async deliver(
    target: string,
    send: (hint: Hint) => Promise<void>,
    opts: DeliverOptions = {},
  ): Promise<DeliveryResult> {
    checkTarget(target);
    this.delivering.set(target, (this.delivering.get(target) ?? 0) + 1);
    try {
      return await this.locks.run(target, () => this.deliverNow(target, send, opts));
    } finally {
      const n = (this.delivering.get(target) ?? 1) - 1;
      if (n > 0) this.delivering.set(target, n);
      else this.delivering.delete(target);
    }
  }

  /** Drops every hint past the window, for every target; returns how many. */
  async expire(): Promise<number> {
    let n = 0;
    for (const target of [...this.counts.keys()]) {
      // A running delivery drops expired hints itself; waiting for it could take as long as its sends.
      if (this.delivering.has(target)) continue;
      n += await this.locks.run(target, () => this.expireTarget(target));
    }
    return n;
  }

  private async deliverNow(
    target: string,
    send: (hint: Hint) => Promise<void>,
    { maxHints = Number.POSITIVE_INFINITY, signal }: DeliverOptions,
  ): Promise<DeliveryResult> {
    const result: DeliveryResult = { delivered: 0, expired: await this.expireDue(target), failed: false };
    const range = targetRange(target);
    let from = range.gte;
    while (result.delivered < maxHints && !signal?.aborted) {
      // Read a page at a time, so the iterator is not held open across sends and new hints are seen.
      const page: Array<[string, Buffer]> = [];
      for await (const entry of this.space.entries({ gte: from, lt: range.lt, limit: PAGE }))
        page.push(entry);
      if (page.length === 0) break;
      for (const [k, bytes] of page) {
        const hint = decodeHint(k, bytes);
        if (!this.isExpired(hint.createdAt)) {
          if (result.delivered >= maxHints || !(await this.takeTurn(target, signal))) return result;
        }
        // Checked again after the wait for the rate limit, which may have outlasted the hint's window.
        if (this.isExpired(hint.createdAt) && (await this.isRedundant(hint))) {
          await this.remove(target, [k]);
          result.expired++;
          this.opts.onExpired?.(1);
        } else {
          try {
            await send(hint);
          } catch (error) {
            return { ...result, failed: true, error };
          }
          await this.remove(target, [k]);
          result.delivered++;
          this.opts.onDelivered?.(target, 1);
        }
        from = k + SEP;
      }
    }
    return result;
  }

  /**
   * Deletes target's hints past the window that are redundant (they are a prefix of its keys, as keys are
   * ordered by createdAt); keeps the others and counts them as overdue.
   */
  private async expireTarget(target: string): Promise<number> {
    // Expired means now - createdAt > windowMs, i.e. createdAt < cutoff for integer createdAt.
    const cutoff = Math.ceil(this.now() - this.windowMs);
    if (cutoff <= 0) return 0;
    const range = { lt: `${target}${SEP}${pad(cutoff)}` };
    let from = targetRange(target).gte;
    let n = 0;
    let kept = 0;
    let checks = 0;
    for (;;) {
      const page: Array<[string, Buffer]> = [];
      for await (const entry of this.space.entries({ gte: from, ...range, limit: EXPIRE_BATCH }))
        page.push(entry);
      if (page.length === 0) break;
      const doomed: string[] = [];
      for (const [k, bytes] of page) {
        if (checks++ < MAX_CHECKS_PER_PASS && (await this.isRedundant(decodeHint(k, bytes)))) doomed.push(k);
        else kept++;
      }
      if (doomed.length > 0) await this.remove(target, doomed);
      n += doomed.length;
      from = `${page.at(-1)![0]}${SEP}`;
    }
    if (kept > 0) this.overdueCounts.set(target, kept);
    else this.overdueCounts.delete(target);
    if (n > 0) this.opts.onExpired?.(n);
    return n;
  }

  /**
   * expireTarget at most once a window (and once a minute) per target on the delivery path: checking
   * whether old hints are redundant asks their keys' replicas, too much for every delivery attempt.
   */
  private async expireDue(target: string): Promise<number> {
    const last = this.lastExpired.get(target);
    if (last !== undefined && this.now() - last < this.expiryIntervalMs) return 0;
    this.lastExpired.set(target, this.now());
    return this.expireTarget(target);
  }

  private async isRedundant(hint: Hint): Promise<boolean> {
    if (!this.opts.redundant) return true;
    try {
      return await this.opts.redundant(hint);
    } catch {
      return false; // unknown: keep it
    }
  }

  private isExpired(createdAt: number): boolean {
    return this.now() - createdAt > this.windowMs;
  }

  /**
   * Waits until target may be sent another hint; false when signal aborted the wait. Waits under 1 ms are
   * not slept (timers cannot), so high rates are held on average rather than hint by hint.
   */
  private async takeTurn(target: string, signal: AbortSignal | undefined): Promise<boolean> {
    const interval = 1000 / this.rate;
    const start = this.now();
    const due = Math.max(this.nextSendAt.get(target) ?? start, start);
    const wait = due - (this.burst - 1) * interval - start;
    if (wait >= 1) {
      try {
        await this.sleep(Math.ceil(wait), signal);
      } catch (err) {
        if (signal?.aborted) return false;
        throw err;
      }
      if (signal?.aborted) return false;
    }
    this.nextSendAt.set(target, due + interval);
    return true;
  }

  private async remove(target: string, keys: string[]): Promise<void> {
    const [only] = keys;
    if (keys.length === 1 && only !== undefined) await this.space.del(only);
    else await this.space.batch(keys.map((key) => ({ type: 'del' as const, key })));
    this.forget(target, keys.length);
  }

  private forget(target: string, n: number): void {
    const left = (this.counts.get(target) ?? 0) - n;
    if (left > 0) this.counts.set(target, left);
    else {
      this.counts.delete(target);
      this.overdueCounts.delete(target);
    }
  }
}
