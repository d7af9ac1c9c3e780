/**
 * Periodically purges expired values from this node's store: their bytes go, their versions stay as
 * tombstones (see version/expiry.ts). Reads already treat expired values as absent; this reclaims space.
 */
import type { Logger } from 'pino';
import { decodeObject } from '../storage/codec.js';
import type { ObjectStore } from '../storage/store.js';
import { type Clock, purgeExpired, values } from '../version/index.js';

/** Values purgeExpired turned into tombstones (it keeps their order). */
function purgedCount(before: Clock, after: Clock): number {
  const old = values(before);
  return values(after).filter((s, i) => s.deleted && !old[i]!.deleted).length;
}

export class ExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly log: Logger,
    private readonly onPurged: (values: number) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Sweeps every intervalMs until stop(). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.sweep(), intervalMs);
    this.timer.unref();
  }

  /** One pass over the store; resolves with the number of values purged. Concurrent calls share a pass. */
  sweep(): Promise<number> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<number> {
    let purged = 0;
    try {
      for await (const [bucket, key, bytes] of this.store.scan()) {
        const now = this.now();
        const seen = decodeObject(bytes);
        if (purgeExpired(seen, now) === seen) continue;
        // Re-read under the key's lock: the object may have changed since the scan saw it.
        await this.store.modifyExisting(bucket, key, (current) => {
          const next = purgeExpired(current, now);
          purged += purgedCount(current, next);
          return next;
        });
      }
    } catch (err) {
      this.log.warn({ err }, 'expiry sweep failed; will retry');
    }
    if (purged > 0) {
      this.onPurged(purged);
      this.log.debug({ purged }, 'purged expired values');
    }
    return purged;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
