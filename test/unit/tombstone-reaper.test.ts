/**
 * The tombstone reaper on three real replicas: a reap that fails on one replica leaves the deciding
 * replica's tombstone in place and is retried at the next pass, until every replica removed the key.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BucketPropsTable } from '../../node/src/buckets/props.js';
import type { Member } from '../../node/src/membership/membership.js';
import { StaticMembership } from '../../node/src/membership/static.js';
import type { PutReply, ReplicaRequest } from '../../node/src/replica/messages.js';
import { Replica } from '../../node/src/replica/replica.js';
import { TombstoneReaper } from '../../node/src/replica/tombstone-reaper.js';
import { generateTokens, hashKey } from '../../node/src/ring/index.js';
import { ObjectStore } from '../../node/src/storage/store.js';

const dirs: string[] = [];
const stores: ObjectStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ids = ['a', 'b', 'c'];
const members: Member[] = ids.map((id) => ({ id, address: `${id}:1`, tokens: generateTokens(id, 8) }));

describe('TombstoneReaper', () => {
  it('retries a reap that failed on one replica, and removes the decider’s copy last', async () => {
    const nodes = new Map<string, { store: ObjectStore; replica: Replica; props: BucketPropsTable }>();
    for (const id of ids) {
      const dir = mkdtempSync(join(tmpdir(), `dynamo-reap-${id}-`));
      dirs.push(dir);
      const store = await ObjectStore.open(dir, { syncWrites: false });
      stores.push(store);
      const props = await BucketPropsTable.load(store, { n: 3, r: 2, w: 2, conflict: 'siblings', ttl: 0 });
      const replica = new Replica(store, props, {
        self: id,
        clockMaxEntries: 50,
        clockPruneAgeMs: 0,
        maxSiblings: 10,
      });
      nodes.set(id, { store, replica, props });
    }
    let failReapOn: string | undefined;
    const call = async (peer: string, req: ReplicaRequest) => {
      if (req.op === 'reap' && peer === failReapOn) throw new Error(`${peer} timed out`);
      return nodes.get(peer)!.replica.handle(req);
    };
    // One tombstone, on all three replicas.
    const sib = { value: Buffer.alloc(0), contentType: '', lastModified: 1, deleted: true, expiresAt: 0 };
    const { obj } = (await call('a', { op: 'put', b: 'b', k: 'k', ctx: [], sib, lww: false })) as PutReply;
    for (const id of ['b', 'c']) await call(id, { op: 'merge', b: 'b', k: 'k', obj, lww: false });
    const membership = new StaticMembership('a', 'test', members);
    const decider = membership.ring().preferenceList(hashKey('b', 'k'), 3)[0]!;
    const other = ids.find((id) => id !== decider)!;
    const reaper = new TombstoneReaper({
      self: decider,
      store: nodes.get(decider)!.store,
      membership: new StaticMembership(decider, 'test', members),
      props: nodes.get(decider)!.props,
      call,
      graceMs: 0,
      timeoutMs: 1000,
      log: pino({ level: 'silent' }),
    });
    const keys = () => ids.map((id) => nodes.get(id)!.store.keyCount);

    failReapOn = other;
    expect(await reaper.pass()).toBe(0);
    // The decider kept its tombstone, so it will try again; the replica that failed kept its own.
    expect(nodes.get(decider)!.store.keyCount).toBe(1);
    expect(nodes.get(other)!.store.keyCount).toBe(1);

    failReapOn = undefined;
    expect(await reaper.pass()).toBe(1);
    expect(keys()).toEqual([0, 0, 0]);
  });
});
