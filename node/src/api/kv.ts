/** Handlers of the client API: objects and bucket props. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { applyPropsUpdate, type BucketProps, MAX_TTL_SECONDS } from '../buckets/props.js';
import { ClientAbortedError, InvalidRequestError, NotFoundError, ValueTooLargeError } from '../errors.js';
import {
  type Clock,
  decodeContext,
  distinctValues,
  encodeContext,
  isLive,
  join,
  type Sibling,
} from '../version/index.js';
import type { NodeContext } from './node-context.js';
import { sendEmpty, sendJson } from './respond.js';
import { parseContentType, parseFlag, parseQuorum, parseTimeout, parseTtl } from './validate.js';

export const CONTEXT_HEADER = 'x-dynamo-context';
const MAX_PROPS_BYTES = 64 * 1024;

/** Reads the request body, failing with 413 as soon as it passes limit bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(new ValueTooLargeError(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new ValueTooLargeError(limit));
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    // An upload cut short is the client's doing, not a server error (no 500, no stack trace).
    req.on('error', () => reject(new ClientAbortedError()));
    req.on('close', () => {
      if (!req.complete) reject(new ClientAbortedError());
    });
  });
}

/** Renders a stored object: 200 with the one live value, 300 with siblings, 404 when absent or deleted. */
export function sendObject(
  ctx: NodeContext,
  res: ServerResponse,
  at: { bucket: string; key: string },
  clock: Clock | undefined,
  rid: string,
): void {
  const headers: Record<string, string> = { 'X-Request-Id': rid };
  if (!clock) throw new NotFoundError('no value for this key');
  const context = encodeContext(join(clock), { secret: ctx.contextSecret, ...at });
  headers['X-Dynamo-Context'] = context;
  const live = distinctValues(clock).filter((s) => isLive(s, Date.now()));
  if (live.length === 0) {
    // Deleted or expired: the context lets a later write supersede the tombstone.
    sendJson(
      res,
      404,
      { error: 'not_found', message: 'no value for this key (deleted or expired)' },
      headers,
    );
    return;
  }
  ctx.metrics.siblings.observe(live.length);
  if (live.length === 1) {
    const only = live[0]!;
    if (only.expiresAt) headers['X-Dynamo-Expires'] = new Date(only.expiresAt).toISOString();
    res.writeHead(200, {
      ...headers,
      'Content-Type': only.contentType,
      'Content-Length': only.value.length,
      'Last-Modified': new Date(only.lastModified).toUTCString(),
    });
    res.end(only.value);
    return;
  }
  sendJson(
    res,
    300,
    {
      context,
      siblings: live.map((s) => ({
        value: s.value.toString('base64'),
        contentType: s.contentType,
        lastModified: new Date(s.lastModified).toISOString(),
        ...(s.expiresAt ? { expiresAt: new Date(s.expiresAt).toISOString() } : {}),
      })),
    },
    headers,
  );
}

/** The context a write sends, checked as issued by this cluster for this very key. */
function contextOf(ctx: NodeContext, req: IncomingMessage, bucket: string, key: string) {
  const raw = req.headers[CONTEXT_HEADER];
  if (raw === undefined || raw === '') return [];
  if (Array.isArray(raw))
    throw new InvalidRequestError('invalid_context', 'send one X-Dynamo-Context header');
  return decodeContext(raw, { secret: ctx.contextSecret, bucket, key });
}

/** One client request on an object, as routed. */
export interface KeyRequest {
  req: IncomingMessage;
  res: ServerResponse;
  query: URLSearchParams;
  bucket: string;
  key: string;
  rid: string;
}

export async function getObject(ctx: NodeContext, { res, query, bucket, key, rid }: KeyRequest) {
  const props = ctx.props.get(bucket);
  const r = parseQuorum('r', query.get('r'), props.n, props.r);
  const timeoutMs = parseTimeout(query.get('timeout'), ctx.config.requestTimeoutMs);
  sendObject(ctx, res, { bucket, key }, await ctx.coordinator.get(bucket, key, { r, timeoutMs, rid }), rid);
}

/** PUT (or, with deleted, DELETE as a tombstone write) of an object. */
export async function putObject(
  ctx: NodeContext,
  { req, res, query, bucket, key, rid }: KeyRequest,
  deleted: boolean,
) {
  const props = ctx.props.get(bucket);
  const w = parseQuorum('w', query.get('w'), props.n, props.w);
  const timeoutMs = parseTimeout(query.get('timeout'), ctx.config.requestTimeoutMs);
  const context = contextOf(ctx, req, bucket, key);
  const ttl = deleted ? 0 : parseTtl(query.get('ttl'), props.ttl, MAX_TTL_SECONDS);
  const value = deleted ? Buffer.alloc(0) : await readBody(req, ctx.config.maxValueBytes);
  const now = Date.now();
  const sibling: Sibling = {
    value,
    contentType: deleted ? '' : parseContentType(req.headers['content-type']),
    lastModified: now,
    deleted,
    expiresAt: ttl > 0 ? now + ttl * 1000 : 0,
  };
  const strict = parseFlag('strict', query.get('strict'));
  const stored = await ctx.coordinator.put(bucket, key, sibling, { w, timeoutMs, context, rid, strict });
  if (!deleted && query.get('returnbody') === 'true')
    return sendObject(ctx, res, { bucket, key }, stored, rid);
  const issued = encodeContext(join(stored), { secret: ctx.contextSecret, bucket, key });
  sendEmpty(res, 204, { 'X-Dynamo-Context': issued, 'X-Request-Id': rid });
}

export function getProps(ctx: NodeContext, res: ServerResponse, b: string) {
  sendJson(res, 200, ctx.props.get(b) satisfies BucketProps);
}

export async function putProps(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, b: string) {
  const body = await readBody(req, MAX_PROPS_BYTES);
  let input: unknown;
  try {
    input = JSON.parse(body.toString('utf8'));
  } catch {
    throw new InvalidRequestError('invalid_props', 'props must be a JSON object');
  }
  const props = applyPropsUpdate(ctx.props.get(b), input);
  await ctx.setProps({ bucket: b, props, ts: Date.now() });
  sendJson(res, 200, props);
}
