/**
 * Records every write a cluster acknowledged and checks, once a fault is over, that each acknowledged
 * value is still readable: alone, or among the siblings (a concurrent write may sit beside it, but a
 * value the cluster said it stored must never vanish).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type Fetch, readValues } from './harness.js';

export interface Missing {
  key: string;
  value: string;
  got: string;
}

export class AckChecker {
  /** Acknowledged values by key. */
  private readonly acked = new Map<string, Set<string>>();
  attempts = 0;
  refused = 0;

  /** fetcher: how requests are sent (default: the global fetch; e.g. one adding a CA and a token). */
  constructor(
    readonly bucket: string,
    private readonly fetcher: Fetch = fetch,
  ) {}

  /** Number of acknowledged writes. */
  get size(): number {
    let n = 0;
    for (const values of this.acked.values()) n += values.size;
    return n;
  }

  /** PUTs value through the node at url (blind write, no context); records it when acknowledged (2xx). */
  async write(url: string, key: string, value: string, query = ''): Promise<boolean> {
    this.attempts++;
    try {
      const res = await this.fetcher(`${url}/buckets/${this.bucket}/keys/${key}${query}`, {
        method: 'PUT',
        body: value,
        headers: { 'Content-Type': 'text/plain' },
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      if (!res.ok) {
        this.refused++;
        return false;
      }
    } catch {
      // No answer is no acknowledgement: the write may or may not have landed, and need not be found.
      this.refused++;
      return false;
    }
    const values = this.acked.get(key) ?? new Set();
    values.add(value);
    this.acked.set(key, values);
    return true;
  }

  /**
   * Writes key-0, key-1, ... to the given node URLs in turn until stop() is called; resolves with the
   * number of writes attempted. The writer keeps going through refusals (a fault is expected).
   */
  runWriter(urls: () => string[], prefix: string, valueBytes = 64): { stop: () => Promise<number> } {
    let running = true;
    let i = 0;
    const pad = 'x'.repeat(Math.max(0, valueBytes - 16));
    const loop = (async () => {
      while (running) {
        const targets = urls();
        const url = targets[i % targets.length]!;
        await this.write(url, `${prefix}-${i}`, `${prefix}-${i}:${pad}`);
        i++;
        if (i % 50 === 0) await sleep(1);
      }
    })();
    return {
      stop: async () => {
        running = false;
        await loop;
        return i;
      },
    };
  }

  /** Every acknowledged value not readable through url (with the given query, e.g. ?r=3). */
  async verify(url: string, query = ''): Promise<Missing[]> {
    const missing: Missing[] = [];
    const keys = [...this.acked.keys()];
    // A few reads at a time: enough to be quick, few enough not to time out on a loaded machine.
    for (let start = 0; start < keys.length; start += 16) {
      await Promise.all(
        keys.slice(start, start + 16).map(async (key) => {
          const got = await this.read(url, key, query);
          for (const value of this.acked.get(key)!)
            if (!got.values.includes(value)) missing.push({ key, value, got: got.status });
        }),
      );
    }
    return missing;
  }

  private async read(url: string, key: string, query: string): Promise<{ status: string; values: string[] }> {
    const r = await readValues(url, this.bucket, key, query, this.fetcher);
    return { status: r.body === undefined ? String(r.status) : `${r.status} ${r.body}`, values: r.values };
  }
}
