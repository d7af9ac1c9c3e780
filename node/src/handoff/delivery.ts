/**
 * The shell around the hint queue: every interval, tries to hand each target's hints to it (oldest
 * first, rate-limited by the queue), one delivery per target at a time, and drops expired hints.
 */
import type { Logger } from 'pino';
import type { Hint, HintQueue } from './hint-queue.js';

/** Sends one hint to its target replica; rejects when the target cannot take it now. */
export type SendHint = (target: string, hint: Hint) => Promise<void>;

export class HintDelivery {
  private timer: NodeJS.Timeout | undefined;
  private readonly busy = new Map<string, Promise<unknown>>();
  private readonly abort = new AbortController();
  private lastExpire = Date.now();

  constructor(
    private readonly queue: HintQueue,
    private readonly send: SendHint,
    private readonly log: Logger,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  /** One round: a delivery pass for every target with hints that is not already being served. */
  tick(): void {
    for (const [target, count] of this.queue.pending()) {
      if (count === 0 || this.busy.has(target)) continue;
      const pass = this.queue
        .deliver(target, (hint) => this.send(target, hint), { signal: this.abort.signal })
        .then((r) => {
          if (r.delivered > 0)
            this.log.info(
              { target, delivered: r.delivered, left: this.queue.pending().get(target) ?? 0 },
              'hints delivered',
            );
        })
        .catch((err) => this.log.warn({ err, target }, 'hint delivery failed'))
        .finally(() => this.busy.delete(target));
      this.busy.set(target, pass);
    }
    if (Date.now() - this.lastExpire >= this.queue.expiryIntervalMs) {
      this.lastExpire = Date.now();
      void this.queue.expire().catch((err) => this.log.warn({ err }, 'hint expiry failed'));
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.abort.abort();
    await Promise.allSettled(this.busy.values());
  }
}
