/**
 * Counts work in flight (requests being handled, background calls of answered requests) so a graceful
 * shutdown can wait for it. A counter, not a set of promises: it sits on every request's path.
 */
export class InFlight {
  private n = 0;
  private waiters: Array<() => void> = [];

  get size(): number {
    return this.n;
  }

  begin(): void {
    this.n++;
  }

  end(): void {
    this.n--;
    if (this.n === 0 && this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** Counts p until it settles; returns p. */
  track<T>(p: Promise<T>): Promise<T> {
    this.begin();
    p.then(
      () => this.end(),
      () => this.end(),
    );
    return p;
  }

  /** Resolves once nothing is in flight, or after timeoutMs, with the number still in flight then. */
  async drained(timeoutMs: number): Promise<number> {
    if (this.n === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      timer = setTimeout(resolve, timeoutMs);
    });
    clearTimeout(timer);
    return this.n;
  }
}
