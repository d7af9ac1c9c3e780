import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { HINTS_KEY_SPACE, HintQueue } from '../../node/src/handoff/hint-queue.js';
import { nextGeneration } from '../../node/src/membership/persisted.js';
import { ObjectStore } from '../../node/src/storage/store.js';
import { clearAfterLeave } from '../../node/src/streaming/rejoin.js';
import { loadNodeRecord, saveNodeRecord } from '../../node/src/streaming/streamer.js';
import { fresh } from '../../node/src/version/dvvset.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const silent = pino({ level: 'silent' });

/** A data directory as a decommission leaves it: objects, membership and props metadata, `left`. */
async function leftDirectory(): Promise<{ dir: string; store: ObjectStore; index: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-left-'));
  dirs.push(dir);
  const store = await ObjectStore.open(dir, { syncWrites: false });
  for (let i = 0; i < 20; i++)
    await store.modify('b', `k${i}`, () =>
      fresh({
        value: Buffer.from('v'),
        contentType: 'text/plain',
        lastModified: 1,
        deleted: false,
        expiresAt: 0,
      }),
    );
  await nextGeneration(store, 1_000);
  await store.putMeta('gossip-members', Buffer.from('[]'));
  await store.putMeta('props:b', Buffer.from('{}'));
  await store.putMeta('stream', Buffer.from('{}'));
  await saveNodeRecord(store, { tokens: ['0'.repeat(32)], state: 'left' });
  const index = join(dir, 'anti-entropy.index');
  writeFileSync(index, 'index');
  return { dir, store, index };
}

const options = (dir: string, index: string, rejoin: boolean) => ({
  nodeId: 'n4',
  dataDir: dir,
  rejoin,
  derivedFiles: [index],
  log: silent,
});

describe('clearAfterLeave', () => {
  it('clears a left directory but for its generation, member table and props; the node record goes last', async () => {
    const { dir, store, index } = await leftDirectory();
    await clearAfterLeave(store, options(dir, index, true));
    expect(await loadNodeRecord(store)).toBeUndefined();
    const objects: unknown[] = [];
    for await (const o of store.scan()) objects.push(o);
    expect(objects).toEqual([]);
    expect(store.keyCount).toBe(0);
    expect(await store.getMeta('stream')).toBeUndefined();
    expect((await store.getMeta('gossip-members'))?.toString()).toBe('[]');
    expect((await store.getMeta('props:b'))?.toString()).toBe('{}');
    // Incarnations still only grow.
    expect(await nextGeneration(store, 0)).toBe(1_001);
    expect(existsSync(index)).toBe(false);
    await store.close();
  });

  it('refuses without --rejoin-after-leave, keeping everything', async () => {
    const { dir, store, index } = await leftDirectory();
    await expect(clearAfterLeave(store, options(dir, index, false))).rejects.toMatchObject({
      code: 'decommissioned',
      message: expect.stringContaining('--rejoin-after-leave'),
    });
    expect((await loadNodeRecord(store))?.state).toBe('left');
    expect(existsSync(index)).toBe(true);
    await store.close();
  });

  it('keeps a directory that still holds hints: they may be the last copies of writes', async () => {
    const { dir, store, index } = await leftDirectory();
    const hints = await HintQueue.open(store.keySpace(HINTS_KEY_SPACE), {
      windowMs: 1000,
      ratePerSecond: 10,
    });
    await hints.add({ target: 'n1', bucket: 'b', key: 'k0', obj: Buffer.from('x') });
    await expect(clearAfterLeave(store, options(dir, index, true))).rejects.toMatchObject({
      code: 'decommissioned',
      message: expect.stringContaining('still holds hints'),
    });
    expect((await loadNodeRecord(store))?.state).toBe('left');
    let objects = 0;
    for await (const _ of store.scan()) objects++;
    expect(objects).toBe(20);
    await store.close();
  });
});
