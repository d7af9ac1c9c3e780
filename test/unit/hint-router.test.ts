/**
 * HintRouter: where a hint goes (its target while a member, the key's replicas once it left) and when
 * it may be dropped (only when a current replica covers it).
 */
import { describe, expect, it } from 'vitest';
import type { BucketPropsTable } from '../../node/src/buckets/props.js';
import { HintRouter } from '../../node/src/handoff/index.js';
import type { Member } from '../../node/src/membership/membership.js';
import { StaticMembership } from '../../node/src/membership/static.js';
import type { ReplicaRequest } from '../../node/src/replica/messages.js';
import { generateTokens, hashKey } from '../../node/src/ring/index.js';
import { encodeObject } from '../../node/src/storage/codec.js';
import { fresh, join, type Sibling, update, withContext } from '../../node/src/version/index.js';

const members: Member[] = ['a', 'b', 'c', 'd'].map((id) => ({
  id,
  address: `${id}:1`,
  tokens: generateTokens(id, 8),
}));
const props = {
  get: () => ({ n: 3, r: 2, w: 2, conflict: 'siblings', ttl: 0 }),
} as unknown as BucketPropsTable;
const sib = (v: string): Sibling => ({
  value: Buffer.from(v),
  contentType: 'text/plain',
  lastModified: 1,
  deleted: false,
  expiresAt: 0,
});
const written = update(fresh(sib('v1')), undefined, 'x', 0);
const later = update(withContext(join(written), sib('v2')), written, 'x', 0);
const hint = (target: string) => ({
  target,
  bucket: 'b',
  key: 'k',
  obj: encodeObject(written),
  createdAt: 0,
});

function router(copies: Map<string, Buffer | null>, self = 'a') {
  const sent: Array<{ peer: string; op: string }> = [];
  const call = async (peer: string, req: ReplicaRequest) => {
    sent.push({ peer, op: req.op });
    if (!copies.has(peer)) throw new Error(`${peer} is down`);
    return req.op === 'get' ? { obj: copies.get(peer) ?? null } : { ok: true };
  };
  const membership = new StaticMembership(self, 'test', members);
  return { sent, r: new HintRouter({ self, membership, props, call, timeoutMs: 100 }), membership };
}

describe('HintRouter', () => {
  const replicas = new StaticMembership('a', 'test', members).ring().preferenceList(hashKey('b', 'k'), 3);

  it('delivers to the target while it is a member', async () => {
    const { r, sent } = router(new Map(replicas.map((id) => [id, null])));
    await r.send(replicas[1]!, hint(replicas[1]!));
    expect(sent).toEqual([{ peer: replicas[1], op: 'merge' }]);
  });

  it('sends the hints of a member that left to the key’s current replicas', async () => {
    const { r, sent } = router(new Map([[replicas[2]!, null]])); // only one replica up
    expect(r.isGone('gone')).toBe(true);
    await r.send('gone', hint('gone'));
    expect(sent.map((s) => s.peer).sort()).toEqual([...replicas].sort());
    const none = router(new Map());
    await expect(none.r.send('gone', hint('gone'))).rejects.toThrow(/no replica/);
  });

  it('calls a hint redundant only when a replica’s copy covers it', async () => {
    expect(await router(new Map(replicas.map((id) => [id, null]))).r.redundant(hint('x'))).toBe(false);
    expect(await router(new Map()).r.redundant(hint('x'))).toBe(false); // nobody answered
    const covered = new Map<string, Buffer | null>([[replicas[0]!, encodeObject(later)]]);
    expect(await router(covered).r.redundant(hint('x'))).toBe(true);
    const other = update(fresh(sib('other')), undefined, 'y', 0);
    expect(await router(new Map([[replicas[0]!, encodeObject(other)]])).r.redundant(hint('x'))).toBe(false);
  });
});
