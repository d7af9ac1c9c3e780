import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nextGeneration } from '../../node/src/membership/persisted.js';
import { ObjectStore } from '../../node/src/storage/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('gossip generation', () => {
  it('grows across restarts even when the clock was set back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dynamo-gen-'));
    dirs.push(dir);
    let store = await ObjectStore.open(dir, { syncWrites: false });
    const first = await nextGeneration(store, 1_000_000);
    expect(first).toBe(1_000_000);
    await store.close();
    store = await ObjectStore.open(dir, { syncWrites: false });
    // Restarted with the clock an hour behind: still greater than the last incarnation.
    const second = await nextGeneration(store, 1_000_000 - 3_600_000);
    expect(second).toBe(1_000_001);
    expect(await nextGeneration(store, 5_000_000)).toBe(5_000_000);
    await store.close();
  });
});
