/**
 * The peer protocol, version 1: the schema of every request one node sends another, in one place.
 * Nothing a peer sends reaches a subsystem before it passed these schemas (TypeBox, compiled once):
 * types, ranges, lengths, and the values that could otherwise be stored and then break every later read
 * or restart (an empty sibling, a time past the JS date range, a content type with CR/LF, props with
 * n = 0, a counter near 2^53).
 *
 * The subsystems keep their own message types; the assertions at the end make the compiler prove each
 * schema accepts only values of those types, so the two cannot drift apart.
 */
import { type Static, Type as T, type TSchema } from '@sinclair/typebox';
import { MAX_N, MAX_TTL_SECONDS } from '../buckets/props.js';
import type { GossipMessage } from '../membership/gossip.js';
import type { AntiEntropyRequest } from '../repair/index.js';
import type { ReplicaRequest } from '../replica/messages.js';
import type { StreamRequest } from '../streaming/source.js';
import { MAX_COUNTER } from '../version/index.js';

/** Latest time a peer may send, in ms since the epoch: the end of the JS date range. */
export const MAX_TIME_MS = 8.64e15;

export const Buf = T.Unsafe<Buffer>(T.Uint8Array());
export const Id = T.String({ minLength: 1, maxLength: 256 });
export const Bucket = T.String({ minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9_.-]+$' });
// Control characters are refused in keys (as the HTTP API refuses them); the byte length is checked too.
export const Key = T.String({ minLength: 1, maxLength: 1024, pattern: '^[^\\u0000-\\u001f\\u007f]+$' });
const Rid = T.Optional(T.String({ maxLength: 128 }));
export const Count = T.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Counter = T.Integer({ minimum: 0, maximum: MAX_COUNTER });
const Time = T.Integer({ minimum: 0, maximum: MAX_TIME_MS });
export const Token = T.String({ pattern: '^[0-9a-f]{32}$' });
/**
 * Printable ASCII and tabs: no CR, LF or other control characters (they would break the HTTP response).
 * Empty for tombstones. The HTTP API applies the same rule (api/validate.ts, CONTENT_TYPE).
 */
const ContentType = T.String({ maxLength: 255, pattern: '^[\\t\\x20-\\x7e]*$' });

export const SiblingSchema = T.Object({
  value: Buf,
  contentType: ContentType,
  lastModified: Time,
  deleted: T.Boolean(),
  expiresAt: Time,
});
const VersionVector = T.Array(T.Tuple([Id, Counter]), { maxItems: 100_000 });

/** A decoded object (version/dvvset Clock). */
export const ClockSchema = T.Object({
  entries: T.Array(
    T.Object({ id: Id, counter: Counter, time: Time, values: T.Array(SiblingSchema, { maxItems: 100_000 }) }),
    { maxItems: 100_000 },
  ),
  anonymous: T.Array(SiblingSchema, { maxItems: 100_000 }),
});

const Props = T.Object({
  n: T.Integer({ minimum: 1, maximum: MAX_N }),
  r: T.Integer({ minimum: 1, maximum: MAX_N }),
  w: T.Integer({ minimum: 1, maximum: MAX_N }),
  conflict: T.Union([T.Literal('siblings'), T.Literal('lww')]),
  ttl: T.Integer({ minimum: 0, maximum: MAX_TTL_SECONDS }),
});
export const StampedProps = T.Object({ bucket: Bucket, props: Props, ts: Time });

const RingDesc = T.Array(
  T.Object({
    id: Id,
    tokens: T.Array(Token, { maxItems: 65_536 }),
    rack: T.Optional(T.String({ maxLength: 256 })),
  }),
  { maxItems: 10_000 },
);
export const MemberEntry = T.Object({
  id: Id,
  address: T.String({ minLength: 1, maxLength: 512 }),
  http: T.Optional(T.String({ maxLength: 2048 })),
  tokens: T.Array(Token, { maxItems: 65_536 }),
  rack: T.Optional(T.String({ maxLength: 256 })),
  status: T.Union([T.Literal('joining'), T.Literal('up'), T.Literal('leaving'), T.Literal('removed')]),
  generation: Count,
  version: Count,
  removedBy: T.Optional(Id),
  sig: T.Optional(T.String({ maxLength: 1024 })),
  cert: T.Optional(T.String({ maxLength: 8192 })),
});
export const Cluster = T.String({ maxLength: 256 });
const Indices = T.Array(T.Integer({ minimum: 0, maximum: 2 ** 31 }), { maxItems: 1 << 20 });

/** A write to coordinate: the fields of put and of put.hint (which adds the replica it stands in for). */
const PUT = { b: Bucket, k: Key, ctx: VersionVector, sib: SiblingSchema, lww: T.Boolean(), rid: Rid };

/** Each request by its op: the whole protocol. */
export const REQUESTS = {
  get: T.Object({ op: T.Literal('get'), b: Bucket, k: Key, rid: Rid }),
  put: T.Object({ op: T.Literal('put'), ...PUT }),
  merge: T.Object({ op: T.Literal('merge'), b: Bucket, k: Key, obj: Buf, lww: T.Boolean(), rid: Rid }),
  'put.hint': T.Object({ op: T.Literal('put.hint'), target: Id, ...PUT }),
  'hint.store': T.Object({ op: T.Literal('hint.store'), target: Id, b: Bucket, k: Key, obj: Buf, rid: Rid }),
  reap: T.Object({ op: T.Literal('reap'), b: Bucket, k: Key, obj: Buf }),
  'props.set': T.Object({ op: T.Literal('props.set'), props: StampedProps }),
  'props.all': T.Object({ op: T.Literal('props.all') }),
  info: T.Object({ op: T.Literal('info') }),
  'gossip.syn': T.Object({
    op: T.Literal('gossip.syn'),
    cluster: Cluster,
    digest: T.Array(T.Tuple([Id, Count, Count]), { maxItems: 10_000 }),
  }),
  'gossip.push': T.Object({
    op: T.Literal('gossip.push'),
    cluster: Cluster,
    entries: T.Array(MemberEntry, { maxItems: 10_000 }),
  }),
  'ae.root': T.Object({ op: T.Literal('ae.root'), from: Id, ring: T.Optional(T.String({ maxLength: 64 })) }),
  'ae.children': T.Object({
    op: T.Literal('ae.children'),
    from: Id,
    d: T.Integer({ minimum: 0, maximum: 32 }),
    indices: Indices,
  }),
  'ae.keys': T.Object({
    op: T.Literal('ae.keys'),
    from: Id,
    leaves: Indices,
    // Paging: leaves[0]'s keys after this one (bucket, NUL, key).
    after: T.Optional(T.String({ maxLength: 1300 })),
  }),
  'stream.pull': T.Object({
    op: T.Literal('stream.pull'),
    target: Id,
    old: RingDesc,
    next: RingDesc,
    mode: T.Union([T.Literal('displaced'), T.Literal('all')]),
    after: T.Union([T.String({ maxLength: 2048 }), T.Null()]),
    maxBytes: T.Integer({ minimum: 1, maximum: 64 * 1024 * 1024 }),
    widen: T.Optional(
      T.Object({
        bucket: Bucket,
        fromN: T.Integer({ minimum: 1, maximum: MAX_N }),
        toN: T.Integer({ minimum: 1, maximum: MAX_N }),
      }),
    ),
  }),
  'stream.push': T.Object({
    op: T.Literal('stream.push'),
    entries: T.Array(T.Tuple([Bucket, Key, Buf]), { maxItems: 1_000_000 }),
  }),
} satisfies Record<string, TSchema>;

export type Op = keyof typeof REQUESTS;
export type PeerRequest = { [K in Op]: Static<(typeof REQUESTS)[K]> }[Op];

// The compiler proves every schema admits only values of the subsystems' own message types.
type Admits<S, T> = [S] extends [T] ? true : never;
type ReplicaOps = ReplicaRequest['op'];
type GossipOps = GossipMessage['op'];
type AeOps = AntiEntropyRequest['op'];
type StreamOps = StreamRequest['op'];
const proofs: [
  Admits<Extract<PeerRequest, { op: ReplicaOps }>, ReplicaRequest>,
  Admits<Extract<PeerRequest, { op: GossipOps }>, GossipMessage>,
  Admits<Extract<PeerRequest, { op: AeOps }>, AntiEntropyRequest>,
  Admits<Extract<PeerRequest, { op: StreamOps }>, StreamRequest>,
  Admits<ReplicaOps | GossipOps | AeOps | StreamOps, Op>,
] = [true, true, true, true, true];
void proofs;
