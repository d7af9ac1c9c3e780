import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ExpirySweeper } from '../../node/src/replica/expiry-sweeper.js';
import { ObjectStore } from '../../node/src/storage/store.js';
import {
  fresh,
  isLive,
  purgeExpired,
  type Sibling,
  sync,
  update,
  values,
  withContext,
} from '../../node/src/version/index.js';

const sib = (text: string, expiresAt: number): Sibling => ({
  value: Buffer.from(text),
  contentType: 'text/plain',
  lastModified: 1,
  deleted: false,
  expiresAt,
});

describe('value expiry', () => {
  it('treats a value as live until its expiry time, and never for tombstones', () => {
    expect(isLive(sib('a', 0), 10 ** 15)).toBe(true);
    expect(isLive(sib('a', 1000), 999)).toBe(true);
    expect(isLive(sib('a', 1000), 1000)).toBe(false);
    expect(isLive({ ...sib('a', 0), deleted: true }, 0)).toBe(false);
  });

  it('purges the bytes of expired values but keeps their versions in the clock', () => {
    const c = update(withContext([], sib('gone', 100)), undefined, 'n1', 1);
    const c2 = update(withContext([], sib('stays', 0)), c, 'n1', 2);
    const purged = purgeExpired(c2, 200);
    expect(values(purged).map((s) => [s.value.toString(), s.deleted])).toEqual([
      ['stays', false],
      ['', true],
    ]);
    expect(purged.entries.map((e) => e.counter)).toEqual(c2.entries.map((e) => e.counter));
    expect(purgeExpired(purged, 200)).toBe(purged); // nothing more to do: same object
  });

  it('does not let a replica holding the unpurged value bring it back after a sync', () => {
    const stale = update(fresh(sib('session', 100)), undefined, 'n1', 1);
    const purged = purgeExpired(stale, 200);
    const merged = sync(purged, stale);
    expect(values(merged).filter((s) => isLive(s, 200))).toEqual([]);
  });
});

describe('ExpirySweeper', () => {
  let dir: string;
  let store: ObjectStore;
  afterEach(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('purges expired values on disk and leaves live ones', async () => {
    dir = mkdtempSync(join(tmpdir(), 'dynamo-sweep-'));
    store = await ObjectStore.open(dir, { syncWrites: false });
    for (let i = 0; i < 50; i++) {
      await store.modify('b', `k${i}`, () =>
        update(fresh(sib(`v${i}`, i % 2 === 0 ? 1000 : 0)), undefined, 'n1', 1),
      );
    }
    let purgedTotal = 0;
    const sweeper = new ExpirySweeper(
      store,
      pino({ level: 'silent' }),
      (n) => (purgedTotal += n),
      () => 5000,
    );
    expect(await sweeper.sweep()).toBe(25);
    expect(purgedTotal).toBe(25);
    for (let i = 0; i < 50; i++) {
      const [s] = values((await store.get('b', `k${i}`))!);
      expect(s!.value.toString()).toBe(i % 2 === 0 ? '' : `v${i}`);
    }
    expect(await sweeper.sweep()).toBe(0);
    expect(store.keyCount).toBe(50);
  });
});

describe('ObjectStore key spaces', () => {
  let dir: string;
  let store: ObjectStore;
  afterEach(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a subsystem’s records apart from objects and metadata, across a reopen', async () => {
    dir = mkdtempSync(join(tmpdir(), 'dynamo-space-'));
    store = await ObjectStore.open(dir, { syncWrites: false });
    const hints = store.keySpace('h:');
    await hints.batch([
      { type: 'put', key: 'b', value: Buffer.from('2') },
      { type: 'put', key: 'a', value: Buffer.from('1') },
    ]);
    await hints.put('c', Buffer.from('3'));
    await hints.del('b');
    await store.close();
    store = await ObjectStore.open(dir, { syncWrites: false });
    const entries: string[] = [];
    for await (const [k, v] of store.keySpace('h:').entries()) entries.push(`${k}=${v}`);
    expect(entries).toEqual(['a=1', 'c=3']);
    expect(store.keyCount).toBe(0);
    expect(() => store.keySpace('o:')).toThrow(/prefix/);
  });
});

describe('tombstone reaping rule', () => {
  it('reaps only keys whose every value is a tombstone older than the grace period', async () => {
    const { reapable } = await import('../../node/src/replica/tombstone-reaper.js');
    const tomb = { ...sib('', 0), deleted: true, lastModified: 1000 };
    const c = update(fresh(tomb), undefined, 'n1', 1);
    expect(reapable(c, 1500, 1000)).toBe(false); // within grace
    expect(reapable(c, 2000, 1000)).toBe(true);
    const mixed = update(withContext([], sib('alive', 0)), c, 'n2', 2);
    expect(reapable(mixed, 10_000, 1000)).toBe(false); // a live sibling keeps the key
    const expired = update(fresh({ ...sib('session', 5000), lastModified: 100 }), undefined, 'n1', 1);
    expect(reapable(expired, 5500, 1000)).toBe(false); // grace counts from the expiry
    expect(reapable(expired, 6000, 1000)).toBe(true);
  });
});
