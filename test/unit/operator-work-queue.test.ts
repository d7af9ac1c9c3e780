import { describe, expect, it } from 'vitest';
import { WorkQueue } from '../../operator/src/work-queue.js';

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

describe('WorkQueue', () => {
  it('coalesces events for a key that is already queued', async () => {
    const seen: string[] = [];
    const queue = new WorkQueue(
      async (key) => {
        seen.push(key);
        return {};
      },
      () => {},
      { concurrency: 1 },
    );
    queue.add('ns/a');
    queue.add('ns/b');
    queue.add('ns/a');
    queue.add('ns/b');
    await queue.idle();
    // The first add started ns/a at once; the rest coalesced into one pending ns/b (ns/a was running, so it runs again).
    expect(seen.filter((k) => k === 'ns/b')).toHaveLength(1);
    expect(seen.filter((k) => k === 'ns/a').length).toBeLessThanOrEqual(2);
    await queue.stop();
  });

  it('never works on one key twice at once, and re-runs a key changed while it was being worked on', async () => {
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const queue = new WorkQueue(
      async () => {
        active++;
        runs++;
        maxActive = Math.max(maxActive, active);
        await tick(10);
        active--;
        return {};
      },
      () => {},
      { concurrency: 4 },
    );
    queue.add('ns/a');
    await tick(1);
    queue.add('ns/a');
    queue.add('ns/a');
    await tick(40);
    await queue.idle();
    expect(maxActive).toBe(1);
    expect(runs).toBe(2);
    await queue.stop();
  });

  it('requeues after the delay the worker asks for', async () => {
    let runs = 0;
    const queue = new WorkQueue(
      async () => {
        runs++;
        return runs < 3 ? { requeueAfterMs: 5 } : {};
      },
      () => {},
    );
    queue.add('ns/a');
    await tick(60);
    expect(runs).toBe(3);
    await queue.stop();
  });

  it('retries failures with exponential backoff per key, reset by a success', async () => {
    const delays: number[] = [];
    let runs = 0;
    const queue = new WorkQueue(
      async () => {
        runs++;
        if (runs <= 3) throw new Error('boom');
        return {};
      },
      (_key, _err, retryInMs) => delays.push(retryInMs),
      { baseBackoffMs: 2, maxBackoffMs: 6 },
    );
    queue.add('ns/a');
    await tick(80);
    expect(delays).toEqual([2, 4, 6]);
    expect(runs).toBe(4);
    expect(queue.backoffFor('ns/a')).toBe(2);
    await queue.stop();
  });
});
