/**
 * The schema of every reply a node takes from a peer, checked as requests are (router.ts): a reply that
 * does not match its request's op is refused with InvalidReplyError before the caller sees it, so a
 * buggy or hostile peer cannot hand a coordinator, anti-entropy, streaming or gossip a value that
 * would break later reads or restarts (an object that does not decode, an entry from the future, props
 * with n = 0). Objects in replies are decoded and checked as stored objects must be.
 */
import { Type as T, type TSchema } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { PeerUnavailableError } from '../errors.js';
import { checkGenerations, checkProps, decodeForeignObject } from './router.js';
import { Bucket, Buf, Cluster, Count, Id, Key, MemberEntry, type Op, StampedProps } from './schema.js';

const Ok = T.Object({ ok: T.Literal(true) });
const Digest = T.Array(T.Tuple([Id, Count, Count]), { maxItems: 10_000 });
const Hash = T.Array(Buf, { maxItems: 1 << 20 });
/** An anti-entropy key: bucket, NUL, key. */
const BucketKey = T.String({
  maxLength: 1300,
  pattern: '^[A-Za-z0-9_.-]{1,255}\\u0000[^\\u0000-\\u001f\\u007f]{1,1024}$',
});

/** Each op's reply. */
export const REPLIES = {
  get: T.Object({ obj: T.Union([Buf, T.Null()]) }),
  put: T.Object({ obj: Buf }),
  merge: Ok,
  'put.hint': T.Object({ obj: Buf }),
  'hint.store': Ok,
  reap: T.Object({ reaped: T.Boolean() }),
  'props.set': Ok,
  'props.all': T.Object({ props: T.Array(StampedProps, { maxItems: 100_000 }) }),
  info: T.Object({ id: Id, http: T.String({ maxLength: 2048 }), keys: T.Optional(Count) }),
  'gossip.syn': T.Object({
    cluster: Cluster,
    entries: T.Array(MemberEntry, { maxItems: 10_000 }),
    digest: Digest,
  }),
  'gossip.push': Ok,
  'ae.root': T.Object({ root: Buf, ring: T.Optional(T.String({ maxLength: 64 })) }),
  'ae.children': T.Object({ children: T.Array(Hash, { maxItems: 1 << 20 }) }),
  // Paged (repair/anti-entropy.ts AE_KEYS_REPLY_BYTES): next says where the listing goes on.
  'ae.keys': T.Object({
    keys: T.Array(T.Tuple([BucketKey, Buf]), { maxItems: 10_000_000 }),
    next: T.Optional(
      T.Object({ leaf: T.Integer({ minimum: 0, maximum: 2 ** 31 }), after: T.Optional(BucketKey) }),
    ),
  }),
  'stream.pull': T.Object({
    entries: T.Array(T.Tuple([Bucket, Key, Buf]), { maxItems: 1_000_000 }),
    next: T.Union([T.String({ maxLength: 2048 }), T.Null()]),
    scanned: Count,
    total: Count,
  }),
  'stream.push': T.Object({ merged: Count }),
} satisfies Record<Op, TSchema>;

const checkers = new Map<string, TypeCheck<TSchema>>(
  Object.entries(REPLIES).map(([op, schema]) => [op, TypeCompiler.Compile(schema)]),
);

/** A peer's answer that is not a valid reply to what was asked; the request may have been applied. */
export class InvalidReplyError extends PeerUnavailableError {
  constructor(peer: string, message: string) {
    super(peer, `invalid reply: ${message}`, true);
    this.name = 'InvalidReplyError';
  }
}

/** The reply if it is valid for op; throws InvalidReplyError otherwise. */
export function checkReply(peer: string, op: string, reply: unknown, now = Date.now()): unknown {
  const check = checkers.get(op);
  if (!check) throw new InvalidReplyError(peer, `no reply expected to op ${op}`);
  if (!check.Check(reply)) {
    const first = check.Errors(reply).First();
    throw new InvalidReplyError(peer, `${op}${first?.path ?? ''}: ${first?.message ?? 'invalid'}`);
  }
  try {
    const r = reply as Record<string, unknown>;
    if ((op === 'get' || op === 'put' || op === 'put.hint') && r.obj !== null)
      decodeForeignObject(r.obj as Buffer, `${op}/obj`);
    if (op === 'stream.pull')
      for (const [, , obj] of r.entries as Array<[string, string, Buffer]>)
        decodeForeignObject(obj, 'stream.pull/entries/obj');
    if (op === 'gossip.syn') checkGenerations(r.entries as Array<{ id: string; generation: number }>, now);
    if (op === 'props.all') for (const p of r.props as Parameters<typeof checkProps>[0][]) checkProps(p, now);
  } catch (err) {
    throw new InvalidReplyError(peer, (err as Error).message);
  }
  return reply;
}
