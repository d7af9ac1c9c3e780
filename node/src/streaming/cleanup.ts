/**
 * Cleanup after moves (Cassandra's `nodetool cleanup`): deletes the keys of ranges this node no longer
 * replicates. After a join or decommission completed, an ex-owner's copies are redundant (the move
 * streamed them to the new replicas) and frozen: if the ring later changed back, the old owner would be a
 * replica again and its stale copy would bring back keys deleted and reaped meanwhile.
 *
 * Safety rules: nothing runs while a move is under way (the pending ring exists) or while this node holds
 * hints (they may be the only copy the move has not delivered); a key is kept when this node replicates
 * it in the serving ring or in the pending one, for its own bucket's n; each delete is checked under the
 * key's lock against the copy the decision was made on, so a write that lands meanwhile keeps the key.
 */
import type { Logger } from 'pino';
import type { BucketPropsTable } from '../buckets/props.js';
import { ConflictError } from '../errors.js';
import type { Membership } from '../membership/membership.js';
import { hashKey, type Ring } from '../ring/index.js';
import { decodeObject } from '../storage/codec.js';
import type { ObjectStore } from '../storage/store.js';
import { sameVersion } from '../version/index.js';

export interface CleanupStatus {
  running: boolean;
  /** Keys looked at and deleted by the current (or last) run. */
  scanned: number;
  deleted: number;
  /** Keys in the store when the run started (an upper bound of what is left to scan). */
  total: number;
  startedAt: string | null;
  finishedAt: string | null;
  lastError: string | null;
}

export interface CleanupOptions {
  self: string;
  store: ObjectStore;
  props: BucketPropsTable;
  membership: Membership;
  /** Hints this node still holds, for any target. */
  hintsPending: () => number;
  /** Whether every hint stored before this start is counted in hintsPending. */
  hintsCounted: () => boolean;
  log: Logger;
  onDeleted?: (keys: number) => void;
}

const CHECK_EVERY = 256;

/** True when node is one of the key's replicas in ring (for its bucket's n). */
function replicates(ring: Ring | undefined, bucket: string, key: string, n: number, node: string): boolean {
  return ring?.preferenceList(hashKey(bucket, key), n).includes(node) ?? false;
}

export class Cleanup {
  private running: Promise<CleanupStatus> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The ring the last completed automatic run cleaned for. */
  private cleanedFor: Ring | undefined;
  private current: CleanupStatus = {
    running: false,
    scanned: 0,
    deleted: 0,
    total: 0,
    startedAt: null,
    finishedAt: null,
    lastError: null,
  };

  constructor(private readonly opts: CleanupOptions) {}

  status(): CleanupStatus {
    return { ...this.current };
  }

  /** Why a run may not start now, or undefined when it may. */
  blocked(): string | undefined {
    const { membership, self } = this.opts;
    // A joining node replicates nothing yet, a leaving or left one hands its data over: neither cleans.
    if (membership.state(self) !== 'up') return `this node is ${membership.state(self)}`;
    if (membership.pendingRing()) return 'a join or decommission is under way';
    if (!this.opts.hintsCounted()) return 'this node is still counting the hints it holds';
    const hints = this.opts.hintsPending();
    if (hints > 0) return `this node still holds ${hints} hints`;
    return undefined;
  }

  /** Starts a run (on demand); ConflictError when one may not start now. Resolves when it ends. */
  start(): Promise<CleanupStatus> {
    const why = this.blocked();
    if (why && !this.running) throw new ConflictError('cleanup_blocked', `cleanup cannot run now: ${why}`);
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** A bucket's n was lowered: the next automatic check runs even though the ring did not change. */
  private wanted = false;

  requestRun(): void {
    this.wanted = true;
  }

  /** Every intervalMs, runs once after each ring change (or requestRun), when nothing blocks it. */
  startAutomatic(intervalMs: number): void {
    this.cleanedFor = this.opts.membership.ring(); // the ring the node started on moved nothing away
    this.timer = setInterval(() => {
      const ring = this.opts.membership.ring();
      if ((ring === this.cleanedFor && !this.wanted) || this.running || this.blocked()) return;
      const wanted = this.wanted;
      this.wanted = false;
      this.start().then(
        (s) => {
          if (s.lastError === null) this.cleanedFor = ring;
          else if (wanted) this.wanted = true;
        },
        () => {
          if (wanted) this.wanted = true;
        },
      );
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async run(): Promise<CleanupStatus> {
    const { store, props, membership, self, log } = this.opts;
    this.current = {
      running: true,
      scanned: 0,
      deleted: 0,
      total: store.keyCount,
      startedAt: new Date().toISOString(),
      finishedAt: null,
      lastError: null,
    };
    try {
      for await (const [bucket, key, bytes] of store.scan()) {
        // A move starting mid-run stops the run rather than racing it (checked every page of keys: it
        // copies the hint counts; each key's own check against the pending ring is below).
        if (this.current.scanned++ % CHECK_EVERY === 0) {
          const why = this.blocked();
          if (why) throw new Error(`stopped: ${why}`);
        }
        const { n } = props.get(bucket);
        if (replicates(membership.ring(), bucket, key, n, self)) continue;
        if (replicates(membership.pendingRing(), bucket, key, n, self)) continue;
        const seen = decodeObject(bytes);
        const outcome = await store.deleteUnless(bucket, key, (now) => !sameVersion(now, seen));
        if (outcome === 'deleted') {
          this.current.deleted++;
          this.opts.onDeleted?.(1);
        }
      }
    } catch (err) {
      this.current.lastError = (err as Error).message;
      log.warn({ err: this.current.lastError }, 'cleanup stopped; it runs again later');
    }
    this.current.running = false;
    this.current.finishedAt = new Date().toISOString();
    if (this.current.deleted > 0)
      log.info(
        { deleted: this.current.deleted, scanned: this.current.scanned },
        'cleanup removed keys this node no longer replicates',
      );
    return this.status();
  }
}
