import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Hint, HintQueue, type HintQueueOptions } from '../../node/src/handoff/index.js';
import { ObjectStore } from '../../node/src/storage/store.js';

const dirs: string[] = [];
const stores: ObjectStore[] = [];

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function openStore(dir?: string): Promise<{ dir: string; store: ObjectStore }> {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'dynamo-hints-'));
  if (dir === undefined) dirs.push(d);
  const store = await ObjectStore.open(d, { syncWrites: false });
  stores.push(store);
  return { dir: d, store };
}

/** A clock that only moves when the queue sleeps (or the test moves it). */
function fakeTime(start = 1_000_000) {
  const time = { t: start, slept: 0 };
  const opts: HintQueueOptions = {
    now: () => time.t,
    sleep: async (ms) => {
      time.t += ms;
      time.slept += ms;
    },
  };
  return { time, opts };
}

const hint = (target: string, key: string, createdAt?: number) => ({
  target,
  bucket: 'b',
  key,
  obj: Buffer.from(`value of ${key}`),
  ...(createdAt === undefined ? {} : { createdAt }),
});

/** A send that records the keys it was given. */
function recorder() {
  const sent: Hint[] = [];
  return { sent, keys: () => sent.map((h) => h.key), send: async (h: Hint) => void sent.push(h) };
}

describe('HintQueue', () => {
  it('keeps hints and their pending counts across a close and reopen of the store', async () => {
    const { dir, store } = await openStore();
    const { opts } = fakeTime();
    const queue = await HintQueue.open(store.keySpace('h:'), opts);
    await queue.add(hint('n2', 'a', 10));
    await queue.add(hint('n2', 'b', 20));
    await queue.add(hint('n3', 'c', 30));
    expect(queue.pending()).toEqual(
      new Map([
        ['n2', 2],
        ['n3', 1],
      ]),
    );
    await queue.close();
    await store.close();

    const reopened = await openStore(dir);
    const again = await HintQueue.open(reopened.store.keySpace('h:'), opts);
    await again.loaded(); // the stored hints are counted in the background
    expect(again.isLoaded).toBe(true);
    expect(again.pending()).toEqual(
      new Map([
        ['n2', 2],
        ['n3', 1],
      ]),
    );
    await again.add(hint('n2', 'd', 20)); // same ms as 'b': sequence numbers continue past the stored ones
    const r = recorder();
    expect(await again.deliver('n2', r.send)).toEqual({ delivered: 3, expired: 0, failed: false });
    expect(r.sent[0]).toEqual({
      target: 'n2',
      bucket: 'b',
      key: 'a',
      obj: Buffer.from('value of a'),
      createdAt: 10,
    });
    expect(r.keys()).toEqual(['a', 'b', 'd']);
    expect(again.pending()).toEqual(new Map([['n3', 1]]));
  });

  it('delivers oldest first per target and leaves other targets alone', async () => {
    const { store } = await openStore();
    const { opts } = fakeTime();
    const delivered: Array<[string, number]> = [];
    const queue = await HintQueue.open(store.keySpace('h:'), {
      ...opts,
      onDelivered: (target, n) => delivered.push([target, n]),
    });
    await queue.add(hint('n2', 'late', 300));
    await queue.add(hint('n3', 'other', 50));
    await queue.add(hint('n2', 'early', 100));
    await queue.add(hint('n2', 'middle-1', 200));
    await queue.add(hint('n2', 'middle-2', 200));
    // A target whose id is a prefix of another's keeps its own hints.
    await queue.add(hint('n', 'prefix', 1));

    const r = recorder();
    expect(await queue.deliver('n2', r.send)).toEqual({ delivered: 4, expired: 0, failed: false });
    expect(r.keys()).toEqual(['early', 'middle-1', 'middle-2', 'late']);
    expect(r.sent.every((h) => h.target === 'n2')).toBe(true);
    expect(delivered.reduce((sum, [t, n]) => sum + (t === 'n2' ? n : 0), 0)).toBe(4);
    expect(queue.pending()).toEqual(
      new Map([
        ['n3', 1],
        ['n', 1],
      ]),
    );
    expect(await queue.deliver('n2', r.send)).toEqual({ delivered: 0, expired: 0, failed: false });
  });

  it('stops at a failing send, keeps that hint and the rest, and a retry delivers it exactly once', async () => {
    const { store } = await openStore();
    const { opts } = fakeTime();
    const queue = await HintQueue.open(store.keySpace('h:'), opts);
    for (const [i, key] of ['a', 'b', 'c', 'd'].entries()) await queue.add(hint('n2', key, 100 + i));

    const attempts: string[] = [];
    const boom = new Error('owner down again');
    const first = await queue.deliver('n2', async (h) => {
      attempts.push(h.key);
      if (h.key === 'b') throw boom;
    });
    expect(first).toEqual({ delivered: 1, expired: 0, failed: true, error: boom });
    expect(attempts).toEqual(['a', 'b']);
    expect(queue.pending().get('n2')).toBe(3);

    const r = recorder();
    expect(await queue.deliver('n2', r.send)).toEqual({ delivered: 3, expired: 0, failed: false });
    expect(r.keys()).toEqual(['b', 'c', 'd']);
    expect(queue.pending().size).toBe(0);
  });

  it('drops hints past the window without sending them and counts them as expired', async () => {
    const { store } = await openStore();
    const { time, opts } = fakeTime(1_000_000);
    let expiredTotal = 0;
    const queue = await HintQueue.open(store.keySpace('h:'), {
      ...opts,
      windowMs: 10_000,
      onExpired: (n) => {
        expiredTotal += n;
      },
    });
    await queue.add(hint('n2', 'old-1', 980_000));
    await queue.add(hint('n2', 'old-2', 989_999));
    await queue.add(hint('n2', 'edge', 990_000)); // exactly windowMs old: still inside the window
    await queue.add(hint('n2', 'fresh')); // createdAt defaults to now
    await queue.add(hint('n3', 'old-3', 985_000));
    await queue.add(hint('n3', 'fresh-3', 999_000));

    const r = recorder();
    expect(await queue.deliver('n2', r.send)).toEqual({ delivered: 2, expired: 2, failed: false });
    expect(r.keys()).toEqual(['edge', 'fresh']);
    expect(expiredTotal).toBe(2);

    // expire() works for every target.
    expect(await queue.expire()).toBe(1);
    expect(queue.pending()).toEqual(new Map([['n3', 1]]));
    time.t += 10_000;
    expect(await queue.expire()).toBe(1);
    expect(queue.pending().size).toBe(0);
    expect(expiredTotal).toBe(4);
  });

  it('keeps a hint past the window that no replica covers, delivers it, and counts it as overdue', async () => {
    const { store } = await openStore();
    const { time, opts } = fakeTime(1_000_000);
    const covered = new Set(['redundant']);
    const queue = await HintQueue.open(store.keySpace('h:'), {
      ...opts,
      windowMs: 10_000,
      redundant: async (h) => covered.has(h.key),
    });
    await queue.add(hint('n2', 'redundant', 980_000));
    await queue.add(hint('n2', 'last-copy', 981_000));
    await queue.add(hint('n3', 'unknown', 982_000));
    // The replicas cannot be asked for n3's hint: kept.
    const failing = await HintQueue.open(store.keySpace('x:'), {
      ...opts,
      windowMs: 10_000,
      redundant: async () => {
        throw new Error('no replica answered');
      },
    });
    await failing.add(hint('n3', 'unknown', 982_000));
    expect(await failing.expire()).toBe(0);
    expect(failing.overdue()).toEqual(new Map([['n3', 1]]));

    expect(await queue.expire()).toBe(1); // only the covered one
    expect(queue.overdue()).toEqual(
      new Map([
        ['n2', 1],
        ['n3', 1],
      ]),
    );
    expect(queue.pending()).toEqual(
      new Map([
        ['n2', 1],
        ['n3', 1],
      ]),
    );
    const r = recorder();
    time.t += 1_000_000; // however old, it is still delivered
    expect(await queue.deliver('n2', r.send)).toEqual({ delivered: 1, expired: 0, failed: false });
    expect(r.keys()).toEqual(['last-copy']);
    expect(await queue.expire()).toBe(0);
    expect(queue.overdue()).toEqual(new Map([['n3', 1]]));
  });

  it('drops a hint that expires while earlier ones wait for the rate limit', async () => {
    const { store } = await openStore();
    const { time, opts } = fakeTime(1_000_000);
    const queue = await HintQueue.open(store.keySpace('h:'), { ...opts, windowMs: 1_000, ratePerSecond: 10 });
    await queue.add(hint('n2', 'a', 999_000));
    await queue.add(hint('n2', 'b', 999_050));
    const r = recorder();
    // 'a' (1,000 ms old) goes at once; 'b' waits 100 ms, by when it is 1,050 ms old.
    expect(await queue.deliver('n2', r.send)).toEqual({ delivered: 1, expired: 1, failed: false });
    expect(r.keys()).toEqual(['a']);
    expect(time.t).toBe(1_000_100);
  });

  it('holds the rate limit: 50 hints at 100 per second take at least 490 ms of (fake) time', async () => {
    const { store } = await openStore();
    const { time, opts } = fakeTime();
    const queue = await HintQueue.open(store.keySpace('h:'), { ...opts, ratePerSecond: 100 });
    for (let i = 0; i < 50; i++) await queue.add(hint('n2', `k${i}`, 1));
    await queue.add(hint('n3', 'other', 1));

    const sendTimes: number[] = [];
    const start = time.t;
    const result = await queue.deliver('n2', async () => void sendTimes.push(time.t));
    expect(result.delivered).toBe(50);
    expect(time.t - start).toBe(490);
    for (let i = 1; i < sendTimes.length; i++)
      expect(sendTimes[i]! - sendTimes[i - 1]!).toBeGreaterThanOrEqual(10);

    // Each target has its own bucket: another target's first hint does not wait.
    const before = time.t;
    await queue.deliver('n3', async () => undefined);
    expect(time.t).toBe(before);
  });

  it('allows a burst of sends after a pause, then paces the rest', async () => {
    const { store } = await openStore();
    const { time, opts } = fakeTime();
    const queue = await HintQueue.open(store.keySpace('h:'), { ...opts, ratePerSecond: 100, burst: 5 });
    for (let i = 0; i < 15; i++) await queue.add(hint('n2', `k${i}`, 1));
    const start = time.t;
    await queue.deliver('n2', async () => undefined);
    expect(time.t - start).toBe(100); // 5 at once, then 10 more at 10 ms apart
  });

  it('honours maxHints and an abort signal, leaving the rest queued', async () => {
    const { store } = await openStore();
    // Real timers here: the default sleep must give way to the abort signal.
    const queue = await HintQueue.open(store.keySpace('h:'), { ratePerSecond: 1 });
    for (let i = 0; i < 5; i++) await queue.add(hint('n2', `k${i}`, Date.now() + i));

    const r = recorder();
    expect(await queue.deliver('n2', r.send, { maxHints: 1 })).toEqual({
      delivered: 1,
      expired: 0,
      failed: false,
    });
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 50);
    // The next send is due a second after the first; the abort ends the wait early.
    const result = await queue.deliver('n2', r.send, { signal: controller.signal });
    expect(result).toEqual({ delivered: 0, expired: 0, failed: false });
    expect(Date.now() - started).toBeLessThan(900);
    expect(r.keys()).toEqual(['k0']);
    expect(queue.pending().get('n2')).toBe(4);
  });

  it('never loses a hint added while a delivery is running', async () => {
    const { store } = await openStore();
    const { time, opts } = fakeTime(1_000_000);
    const queue = await HintQueue.open(store.keySpace('h:'), { ...opts, ratePerSecond: 1_000 });
    for (let i = 0; i < 10; i++) await queue.add(hint('n2', `first-${i}`, 500_000 + i));

    const sent: string[] = [];
    let added = 0;
    const pass = await queue.deliver('n2', async (h) => {
      sent.push(h.key);
      if (added < 5) {
        added++;
        await queue.add(hint('n2', `newer-${added}`)); // now: after everything queued
        await queue.add(hint('n2', `older-${added}`, 400_000 + added)); // behind the delivery's position
        await queue.add(hint('n3', `elsewhere-${added}`));
      }
      time.t += 1;
    });
    expect(pass.failed).toBe(false);
    // Newer hints went out in the same pass; older ones stay queued for the next.
    expect(sent.filter((k) => k.startsWith('newer-'))).toHaveLength(5);
    expect(sent.some((k) => k.startsWith('older-'))).toBe(false);
    expect(queue.pending()).toEqual(
      new Map([
        ['n2', 5],
        ['n3', 5],
      ]),
    );
    await queue.deliver('n2', async (h) => void sent.push(h.key));
    expect(sent.toSorted()).toEqual(
      [
        ...Array.from({ length: 10 }, (_, i) => `first-${i}`),
        ...Array.from({ length: 5 }, (_, i) => `newer-${i + 1}`),
        ...Array.from({ length: 5 }, (_, i) => `older-${i + 1}`),
      ].toSorted(),
    );
    expect(queue.pending()).toEqual(new Map([['n3', 5]]));
  });

  it('sends each hint once when adds, deliveries and expiry of one target run at the same time', async () => {
    const { store } = await openStore();
    let now = 1_000_000;
    const queue = await HintQueue.open(store.keySpace('h:'), {
      now: () => now,
      sleep: async () => undefined,
      windowMs: 1_000,
      ratePerSecond: 1e9,
    });
    for (let i = 0; i < 100; i++) await queue.add(hint('n2', `a${i}`, now));
    const sends = new Map<string, number>();
    const send = async (h: Hint) => {
      sends.set(h.key, (sends.get(h.key) ?? 0) + 1);
      await new Promise((resolve) => setImmediate(resolve));
    };
    const [first, second] = await Promise.all([
      queue.deliver('n2', send),
      queue.deliver('n2', send),
      queue.expire(),
      ...Array.from({ length: 100 }, (_, i) => queue.add(hint('n2', `b${i}`, now))),
    ]);
    await queue.deliver('n2', send);
    expect([...sends.values()].every((n) => n === 1)).toBe(true);
    expect(sends.size).toBe(200);
    expect(first.delivered + second.delivered).toBeGreaterThanOrEqual(100);
    expect(queue.pending().size).toBe(0);

    // Expiry racing a delivery counts each dropped hint once.
    for (let i = 0; i < 50; i++) await queue.add(hint('n2', `c${i}`, now));
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const delivering = queue.deliver('n2', async () => gate);
    now += 2_000;
    const expiredBySweep = await queue.expire();
    release();
    const result = await delivering;
    expect(result.delivered + result.expired + expiredBySweep).toBe(50);
    expect(queue.pending().size).toBe(0);
  });

  it('adds and delivers 10k hints and pending returns to 0', async () => {
    const { store } = await openStore();
    let delivered = 0;
    const queue = await HintQueue.open(store.keySpace('h:'), {
      ratePerSecond: 1e9,
      onDelivered: (_, n) => {
        delivered += n;
      },
    });
    const targets = ['n1', 'n2', 'n3', 'n4'];
    for (let chunk = 0; chunk < 10_000; chunk += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, i) => queue.add(hint(targets[(chunk + i) % 4]!, `k${chunk + i}`))),
      );
    }
    expect([...queue.pending().values()]).toEqual([2500, 2500, 2500, 2500]);

    const seen = new Set<string>();
    const results = await Promise.all(
      targets.map((t) => queue.deliver(t, async (h) => void seen.add(h.key))),
    );
    expect(results.map((r) => r.delivered)).toEqual([2500, 2500, 2500, 2500]);
    expect(seen.size).toBe(10_000);
    expect(delivered).toBe(10_000);
    expect(queue.pending().size).toBe(0);
    const reopened = await HintQueue.open(store.keySpace('h:'));
    await reopened.loaded();
    expect(reopened.pending().size).toBe(0);
  });

  it('opens without reading the stored hints; adds and deliveries meanwhile lose none and count each once', async () => {
    const { dir, store } = await openStore();
    const first = await HintQueue.open(store.keySpace('h:'), { ratePerSecond: 1e9 });
    const targets = ['n2', 'n3', 'n4'];
    for (let chunk = 0; chunk < 6_000; chunk += 500)
      await Promise.all(
        Array.from({ length: 500 }, (_, i) => first.add(hint(targets[(chunk + i) % 3]!, `old${chunk + i}`))),
      );
    await first.close();
    await store.close();

    const reopened = await openStore(dir);
    const queue = await HintQueue.open(reopened.store.keySpace('h:'), { ratePerSecond: 1e9 });
    // Right after the open: new hints for a stored target and a new one, and a delivery, while counting.
    const sent = new Map<string, number>();
    const send = async (h: Hint) => void sent.set(h.key, (sent.get(h.key) ?? 0) + 1);
    const adds = Array.from({ length: 300 }, (_, i) => queue.add(hint(i % 2 ? 'n2' : 'n5', `new${i}`)));
    const early = queue.deliver('n3', send);
    await Promise.all([...adds, early, queue.loaded()]);
    expect(queue.isLoaded).toBe(true);
    const n3 = (await early).delivered;
    expect(queue.pending()).toEqual(
      new Map([
        ['n2', 2_000 + 150],
        ...(n3 === 2_000 ? [] : [['n3', 2_000 - n3] as [string, number]]),
        ['n4', 2_000],
        ['n5', 150],
      ]),
    );
    for (const t of ['n2', 'n3', 'n4', 'n5']) await queue.deliver(t, send);
    expect(sent.size).toBe(6_300);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    expect(queue.pending().size).toBe(0);
  });

  it('never overwrites a stored hint, whatever key a hint of an older ms took in an earlier run', async () => {
    const { dir, store } = await openStore();
    const { opts } = fakeTime();
    const first = await HintQueue.open(store.keySpace('h:'), opts);
    await first.add(hint('n2', 'newest', 500)); // sequence 0, the target's last key
    await first.add(hint('n2', 'older', 100)); // sequence 1 at an older ms, not the last key
    await first.close();
    await store.close();

    const reopened = await openStore(dir);
    const queue = await HintQueue.open(reopened.store.keySpace('h:'), opts);
    // The sequence continues past the last key's (0): the key (100, 1) is in use and must be skipped.
    await queue.add(hint('n2', 'again-older', 100));
    await queue.loaded();
    expect(queue.pending()).toEqual(new Map([['n2', 3]]));
    const r = recorder();
    await queue.deliver('n2', r.send);
    expect(r.keys().toSorted()).toEqual(['again-older', 'newest', 'older']);
  });

  it('stops counting at close, before the store closes', async () => {
    const { dir, store } = await openStore();
    const first = await HintQueue.open(store.keySpace('h:'));
    await Promise.all(Array.from({ length: 3_000 }, (_, i) => first.add(hint(`t${i % 300}`, `k${i}`))));
    await first.close();
    await store.close();

    const reopened = await openStore(dir);
    const queue = await HintQueue.open(reopened.store.keySpace('h:'));
    await queue.close();
    await reopened.store.close();
    await expect(queue.loaded()).rejects.toThrow(/closed/);
    expect(queue.isLoaded).toBe(false);
  });
});
