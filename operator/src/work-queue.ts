// A work queue of cluster keys (namespace/name), as client-go's: events for a key coalesce into one pending item,
// a key is never worked on by two workers at once, and failures come back with per-key exponential backoff.

export interface WorkQueueOptions {
  /** Keys worked on at once (different keys only). */
  concurrency?: number;
  /** First retry delay after a failure; doubles per consecutive failure of the key. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
}

/** What the worker says about a key: look again after `afterMs`, or only on the next event. */
export type WorkResult = { requeueAfterMs?: number };

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  /** Keys added again while being worked on: they go back in the queue when the work ends. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly idleWaiters: Array<() => void> = [];
  private running = 0;
  private stopped = false;
  private readonly concurrency: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(
    private readonly worker: (key: string) => Promise<WorkResult>,
    private readonly onError: (key: string, err: unknown, retryInMs: number) => void,
    options: WorkQueueOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 4;
    this.baseBackoffMs = options.baseBackoffMs ?? 1_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 5 * 60_000;
  }

  /** Queues key now (a no-op when it is already queued). */
  add(key: string): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Queues key after delayMs; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending !== undefined) {
      if (pending.at <= at) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.timers.set(key, { at, timer });
  }

  /** Delay before the next retry of key after one more failure. */
  backoffFor(key: string): number {
    const failures = this.failures.get(key) ?? 0;
    return Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** failures);
  }

  get length(): number {
    return this.queue.length;
  }

  /** Resolves when nothing is queued or being worked on (timers may still be pending). */
  async idle(): Promise<void> {
    if (this.queue.length === 0 && this.running === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops everything pending and waits for work in progress to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.queue.length = 0;
    this.queued.clear();
    await this.idle();
  }

  private pump(): void {
    while (!this.stopped && this.running < this.concurrency) {
      const index = this.queue.findIndex((key) => !this.active.has(key));
      if (index < 0) break;
      const [key] = this.queue.splice(index, 1) as [string];
      this.queued.delete(key);
      this.active.add(key);
      this.running++;
      void this.work(key);
    }
    if (this.queue.length === 0 && this.running === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private async work(key: string): Promise<void> {
    try {
      const result = await this.worker(key);
      this.failures.delete(key);
      if (result.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      const delay = this.backoffFor(key);
      this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
      this.onError(key, err, delay);
      this.addAfter(key, delay);
    } finally {
      this.active.delete(key);
      this.running--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
