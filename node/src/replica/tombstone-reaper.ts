/**
 * Garbage collection of tombstones (deleted and expired values). A key whose every value is a tombstone
 * older than the grace period is removed, but only when every replica of the key answers with the same
 * version (or has none left): then no replica can bring the deleted value back. The key's first live
 * replica decides; each replica deletes only if its copy is still that very version (checked under the
 * key's lock). The decider removes its own copy last, only once every other replica confirmed: a reap
 * that fails anywhere leaves the decider's tombstone in place, so the next pass tries again.
 */
import type { Logger } from 'pino';
import type { BucketPropsTable } from '../buckets/props.js';
import type { Membership } from '../membership/membership.js';
import { hashKey } from '../ring/index.js';
import { decodeObject } from '../storage/codec.js';
import type { ObjectStore } from '../storage/store.js';
import { type Clock, isLive, sameVersion, values } from '../version/index.js';
import type { GetReply, ReapReply, ReplicaRequest } from './messages.js';

/** True when every value of the clock is a tombstone whose last change is older than graceMs. */
export function reapable(c: Clock, now: number, graceMs: number): boolean {
  const all = values(c);
  if (all.length === 0 || all.some((s) => isLive(s, now))) return false;
  const newest = Math.max(...all.map((s) => Math.max(s.lastModified, s.expiresAt)));
  return newest + graceMs <= now;
}

export interface TombstoneReaperOptions {
  self: string;
  store: ObjectStore;
  membership: Membership;
  props: BucketPropsTable;
  call: (peer: string, req: ReplicaRequest, timeoutMs: number) => Promise<unknown>;
  graceMs: number;
  timeoutMs: number;
  log: Logger;
  onReaped?: (keys: number) => void;
  now?: () => number;
}

export class TombstoneReaper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private readonly now: () => number;

  constructor(private readonly opts: TombstoneReaperOptions) {
    this.now = opts.now ?? Date.now;
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.pass(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass over the store; resolves with the number of keys removed on every replica. */
  pass(): Promise<number> {
    this.running ??= this.sweep().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async sweep(): Promise<number> {
    let reaped = 0;
    try {
      for await (const [bucket, key, bytes] of this.opts.store.scan()) {
        if (
          reapable(decodeObject(bytes), this.now(), this.opts.graceMs) &&
          (await this.reap(bucket, key, bytes))
        ) {
          reaped++;
        }
      }
    } catch (err) {
      this.opts.log.warn({ err }, 'tombstone reaping failed; will retry');
    }
    if (reaped > 0) {
      this.opts.onReaped?.(reaped);
      this.opts.log.info({ reaped }, 'tombstones removed');
    }
    return reaped;
  }

  private async reap(bucket: string, key: string, bytes: Buffer): Promise<boolean> {
    const { membership, self } = this.opts;
    const pref = membership.ring().preferenceList(hashKey(bucket, key), this.opts.props.get(bucket).n);
    // One replica decides, so replicas do not all ask each other: the first one that is not down.
    if (pref.find((id) => membership.state(id) !== 'down') !== self) return false;
    const mine = decodeObject(bytes);
    const replies = await Promise.allSettled(
      pref.map((peer) => this.opts.call(peer, { op: 'get', b: bucket, k: key }, this.opts.timeoutMs)),
    );
    for (const r of replies) {
      // An unreachable replica, or one whose version differs, could bring the value back: keep the tombstone.
      if (r.status === 'rejected') return false;
      const { obj } = r.value as GetReply;
      // No copy: an earlier reap removed it there and the decider's own delete was not reached.
      if (obj && !sameVersion(decodeObject(obj), mine)) return false;
    }
    const reap: ReplicaRequest = { op: 'reap', b: bucket, k: key, obj: bytes };
    const others = pref.filter((peer) => peer !== self);
    const results = await Promise.allSettled(
      others.map((peer) => this.opts.call(peer, reap, this.opts.timeoutMs)),
    );
    const failed = results.filter((r) => r.status === 'rejected' || !(r.value as ReapReply).reaped).length;
    if (failed > 0) {
      this.opts.log.debug({ bucket, key, failed }, 'reap not confirmed by every replica; will retry');
      return false;
    }
    const own = (await this.opts.call(self, reap, this.opts.timeoutMs)) as ReapReply;
    return own.reaped;
  }
}
