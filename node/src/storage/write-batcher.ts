/**
 * Group commit: puts issued within one turn of the event loop are written to LevelDB as one batch
 * (one log record, and one fsync when writes are synced). Each put resolves when its batch is durable.
 */
import type { ClassicLevel } from 'classic-level';

interface PendingPut {
  key: string;
  value: Buffer;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class WriteBatcher {
  private queue: PendingPut[] = [];
  private scheduled = false;

  constructor(
    private readonly db: ClassicLevel<string, Buffer>,
    private readonly sync: boolean,
  ) {}

  /** Queues a put; resolves once the batch holding it is in LevelDB's log. */
  put(key: string, value: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ key, value, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    try {
      await this.db.batch(
        batch.map((p) => ({ type: 'put' as const, key: p.key, value: p.value })),
        { sync: this.sync },
      );
      for (const p of batch) p.resolve();
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
    }
  }
}
