/**
 * The one entry of peer requests into a node: every request is checked against its schema
 * (protocol/schema.ts) and the rules a schema cannot state, then handed to the subsystem that owns its
 * op. An invalid request gets a typed error (`unknown_op`, `invalid_message`) naming what is wrong, and
 * reaches no subsystem.
 */

import type { TSchema } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { InvalidRequestError } from '../errors.js';
import type { GossipMessage } from '../membership/gossip.js';
import type { AntiEntropyRequest } from '../repair/index.js';
import type { ReplicaRequest } from '../replica/messages.js';
import { decodeObject } from '../storage/codec.js';
import type { StreamRequest } from '../streaming/source.js';
import type { Clock } from '../version/index.js';
import { ClockSchema, type Op, type PeerRequest, REQUESTS } from './schema.js';

/** How far ahead of this node's clock a peer's props timestamp may be (clock skew). */
export const MAX_PROPS_AHEAD_MS = 10 * 60_000;
/** How far ahead of this node's clock a member's gossip generation may be. */
export const MAX_GENERATION_AHEAD_MS = 24 * 3600_000;
const MAX_KEY_BYTES = 1024;

const invalid = (message: string) => new InvalidRequestError('invalid_message', message);

const checkers = new Map<string, TypeCheck<TSchema>>(
  Object.entries(REQUESTS).map(([op, schema]) => [op, TypeCompiler.Compile(schema)]),
);
const clockCheck = TypeCompiler.Compile(ClockSchema);

/** Decodes an object a peer sent and checks it as a stored object must be; throws invalid_message. */
export function decodeForeignObject(bytes: Buffer, what = 'obj'): Clock {
  let clock: Clock;
  try {
    clock = decodeObject(bytes);
  } catch {
    throw invalid(`${what}: not an encoded object`);
  }
  if (!clockCheck.Check(clock)) {
    const first = clockCheck.Errors(clock).First();
    throw invalid(`${what}${first?.path ?? ''}: ${first?.message ?? 'invalid object'}`);
  }
  for (const e of clock.entries)
    if (e.values.length > e.counter) throw invalid(`${what}: entry ${e.id} has more values than events`);
  return clock;
}

/** The request if it is valid; throws InvalidRequestError (unknown_op, invalid_message) otherwise. */
export function parseRequest(body: unknown, now = Date.now()): PeerRequest {
  const op = typeof body === 'object' && body !== null ? (body as { op?: unknown }).op : undefined;
  const check = typeof op === 'string' ? checkers.get(op) : undefined;
  if (!check)
    throw new InvalidRequestError('unknown_op', `unknown op ${JSON.stringify(String(op).slice(0, 64))}`);
  if (!check.Check(body)) {
    const first = check.Errors(body).First();
    throw invalid(`${op}${first?.path ?? ''}: ${first?.message ?? 'invalid'}`);
  }
  const req = body as PeerRequest;
  // By the op's schema, not by the fields present: a schema lets unknown fields through unchecked.
  const fields = REQUESTS[req.op].properties as Record<string, unknown>;
  if ('k' in fields && Buffer.byteLength((req as { k: string }).k, 'utf8') > MAX_KEY_BYTES)
    throw invalid(`${op}/k: keys are at most ${MAX_KEY_BYTES} bytes`);
  if ('obj' in fields) decodeForeignObject((req as { obj: Buffer }).obj);
  if (req.op === 'stream.push') {
    for (const [bucket, key, obj] of req.entries) {
      if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES)
        throw invalid(`stream.push: key too long in ${bucket}`);
      decodeForeignObject(obj, 'stream.push/entries/obj');
    }
  }
  if (req.op === 'gossip.push') checkGenerations(req.entries, now);
  if (req.op === 'props.set') checkProps(req.props, now);
  return req;
}

/**
 * Throws invalid_message for a member entry from the future: a generation is a start time (or one
 * more than the last), and one far ahead would outrank every later restart of that member for ever
 * (seen: 2^53 - 1 removed a live member from every ring).
 */
export function checkGenerations(
  entries: ReadonlyArray<{ id: string; generation: number }>,
  now: number,
): void {
  for (const e of entries)
    if (e.generation > now + MAX_GENERATION_AHEAD_MS)
      throw invalid(`gossip: generation of ${e.id} is in the future`);
}

/** Throws invalid_message for props with r or w above n, or stamped in the future (they would win for ever). */
export function checkProps(
  stamped: { props: { n: number; r: number; w: number }; ts: number },
  now: number,
): void {
  const { props, ts } = stamped;
  if (props.r > props.n || props.w > props.n) throw invalid('props: r and w must not exceed n');
  if (ts > now + MAX_PROPS_AHEAD_MS) throw invalid('props: timestamp is in the future');
}

/** The handlers of each subsystem that answers peers. */
export interface PeerHandlers {
  replica(from: string, req: ReplicaRequest): Promise<unknown>;
  gossip(req: GossipMessage): unknown;
  antiEntropy(req: AntiEntropyRequest): unknown;
  stream(req: StreamRequest): Promise<unknown>;
  info(): unknown;
}

type Group = keyof PeerHandlers;
const GROUP: Record<Op, Group> = {
  get: 'replica',
  put: 'replica',
  merge: 'replica',
  'put.hint': 'replica',
  'hint.store': 'replica',
  reap: 'replica',
  'props.set': 'replica',
  'props.all': 'replica',
  info: 'info',
  'gossip.syn': 'gossip',
  'gossip.push': 'gossip',
  'ae.root': 'antiEntropy',
  'ae.children': 'antiEntropy',
  'ae.keys': 'antiEntropy',
  'stream.pull': 'stream',
  'stream.push': 'stream',
};

/** The transport's request handler: validate, then dispatch by op to its subsystem. */
export function peerRouter(h: PeerHandlers): (from: string, body: unknown) => Promise<unknown> {
  return async (from, body) => {
    const req = parseRequest(body);
    switch (GROUP[req.op]) {
      case 'replica':
        return h.replica(from, req as ReplicaRequest);
      case 'gossip':
        return h.gossip(req as GossipMessage);
      case 'antiEntropy':
        return h.antiEntropy(req as AntiEntropyRequest);
      case 'stream':
        return h.stream(req as StreamRequest);
      case 'info':
        return h.info();
    }
  };
}
