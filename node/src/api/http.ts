/**
 * The HTTP server: plain node:http with a small router, so the key/value hot path pays for no framework.
 * Routes: /buckets/{b}/keys/{k}, /buckets/{b}/props, /health, /ready, /metrics, /admin/ring,
 * /admin/status, /admin/decommission, /admin/cleanup, /admin/members/{id}/remove.
 */
import { randomUUID } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import {
  AdminListenerError,
  ClientAbortedError,
  DynamoError,
  NotFoundError,
  NotReadyError,
  QuorumNotMetError,
} from '../errors.js';
import type { Op } from '../metrics/metrics.js';
import { decommission, nodeStatus, ringView, startCleanup } from './admin.js';
import { certificateRole, neededRole } from './auth.js';
import { getObject, getProps, type KeyRequest, putObject, putProps } from './kv.js';
import type { NodeContext } from './node-context.js';
import { sendError, sendJson } from './respond.js';
import { decodeSegment, validateBucket, validateKey } from './validate.js';

class MethodNotAllowedError extends DynamoError {
  readonly status = 405;
  readonly code = 'method_not_allowed';
  constructor(allowed: string) {
    super(`allowed methods: ${allowed}`);
  }
}

const OPS: Record<string, Op> = { GET: 'get', HEAD: 'get', PUT: 'put', POST: 'put', DELETE: 'delete' };

/** Routes /buckets/... requests; returns the metric op name. */
async function routeBuckets(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  parts: string[],
  q: URLSearchParams,
  rid: string,
): Promise<Op> {
  const why = ctx.notServing();
  if (why) throw new NotReadyError(`${why}; try another node`);
  const bucket = validateBucket(decodeSegment(parts[1] ?? '', 'bucket'));
  const method = req.method ?? 'GET';
  if (parts[2] === 'props' && parts.length === 3) {
    if (method === 'GET') getProps(ctx, res, bucket);
    else if (method === 'PUT') await putProps(ctx, req, res, bucket);
    else throw new MethodNotAllowedError('GET, PUT');
    return 'props';
  }
  if (parts[2] !== 'keys' || parts.length < 4) throw new NotFoundError('no such route');
  // An unencoded '/' in a key is kept as part of the key.
  const key = validateKey(
    parts
      .slice(3)
      .map((s) => decodeSegment(s, 'key'))
      .join('/'),
  );
  const op = OPS[method];
  const kr: KeyRequest = { req, res, query: q, bucket, key, rid };
  if (op === 'get') await getObject(ctx, kr);
  else if (op === 'put') await putObject(ctx, kr, false);
  else if (op === 'delete') await putObject(ctx, kr, true);
  else throw new MethodNotAllowedError('GET, PUT, POST, DELETE');
  return op;
}

/** What a listener serves: everything, the client calls only (admin ones elsewhere), or the admin port. */
export type Surface = 'all' | 'client' | 'admin';

async function route(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  surface: Surface,
): Promise<void> {
  const started = process.hrtime.bigint();
  const url = req.url ?? '/';
  const qi = url.indexOf('?');
  const path = qi < 0 ? url : url.slice(0, qi);
  const q = new URLSearchParams(qi < 0 ? '' : url.slice(qi + 1));
  const parts = path.split('/').slice(1);
  const header = req.headers['x-request-id'];
  const rid = typeof header === 'string' && header.length <= 128 ? header : randomUUID();
  let op: Op | undefined;
  try {
    const role = neededRole(req.method ?? 'GET', parts);
    if (role === 'admin' && surface === 'client') throw new AdminListenerError();
    const needed = ctx.auth && role;
    if (needed) {
      try {
        ctx.auth!.check(req.headers.authorization, needed, certificateRole(req.socket));
      } catch (err) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="dynamo-kv"');
        throw err;
      }
    }
    if (parts[0] === 'buckets') {
      op = await routeBuckets(ctx, req, res, parts, q, rid);
    } else if (path === '/health') {
      sendJson(res, 200, { status: 'ok', node: ctx.config.nodeId });
    } else if (path === '/ready') {
      const ready = ctx.ready();
      sendJson(res, ready ? 200 : 503, { ready, node: ctx.config.nodeId });
    } else if (path === '/metrics') {
      const body = await ctx.metrics.registry.metrics();
      res.writeHead(200, { 'Content-Type': ctx.metrics.registry.contentType });
      res.end(body);
    } else if (
      parts[0] === 'admin' &&
      parts[1] === 'members' &&
      parts[3] === 'remove' &&
      parts.length === 4
    ) {
      if (req.method !== 'POST') throw new MethodNotAllowedError('POST');
      const id = decodeSegment(parts[2] ?? '', 'key');
      ctx.membership.remove(id);
      sendJson(res, 200, { removed: id });
    } else if (path === '/admin/status') {
      sendJson(res, 200, nodeStatus(ctx));
    } else if (path === '/admin/decommission') {
      if (req.method !== 'POST') throw new MethodNotAllowedError('POST');
      sendJson(res, 202, decommission(ctx, q.get('force') === 'true'));
    } else if (path === '/admin/cleanup') {
      if (req.method !== 'POST') throw new MethodNotAllowedError('POST');
      sendJson(res, 202, startCleanup(ctx));
    } else if (path === '/admin/ring') {
      sendJson(res, 200, await ringView(ctx, q.get('tokens') === 'true'));
    } else {
      throw new NotFoundError('no such route');
    }
  } catch (err) {
    // The op is known only after validation; count failed validation under the method's op.
    op ??= parts[0] === 'buckets' ? (parts[2] === 'props' ? 'props' : OPS[req.method ?? 'GET']) : undefined;
    if (err instanceof QuorumNotMetError && op) ctx.metrics.quorumFailures.inc({ op });
    if (err instanceof ClientAbortedError) {
      ctx.log.debug({ rid, method: req.method, path }, 'client aborted its request');
      res.statusCode = err.status;
      res.destroy();
    } else if (res.headersSent) res.destroy();
    else
      sendError(res, err, (e) => ctx.log.error({ err: e, rid, method: req.method, path }, 'request failed'));
    // Unread request bodies would otherwise stall keep-alive connections.
    if (!req.complete) req.resume();
  }
  if (op) {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.metrics.requests.inc({ op, code: String(res.statusCode) });
    ctx.metrics.duration.observe({ op }, seconds);
    if (ctx.log.isLevelEnabled('debug'))
      ctx.log.debug({ rid, op, status: res.statusCode, seconds }, 'request');
  }
}

/**
 * The client port's certificate: its current PEM options (with the CA of client certificates, when
 * they are asked for), and a hook for when the files change.
 */
export interface ServerTls {
  options(): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean };
  onChange(reload: () => void): void;
}

/** The status and code a request Node's HTTP parser refused gets (it never reaches route). */
function parserError(code: string | undefined): [number, string, string] {
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'headers_too_large', 'request headers too large'];
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'ERR_HTTP_HEADERS_TIMEOUT')
    return [408, 'request_timeout', 'the request was not received in time'];
  return [400, 'bad_request', 'malformed HTTP request'];
}

/**
 * Creates the HTTP server of a node (not yet listening). Slow clients are bounded: headers within a
 * third of --http-request-timeout-ms, the whole request within it (checked every second), at most
 * --http-max-connections connections; idle keep-alive connections last 65 s (beyond the usual 60 s of
 * load balancers, so they close first).
 */
export function createHttpServer(ctx: NodeContext, tls?: ServerTls, surface: Surface = 'all'): Server {
  const requestTimeout = ctx.config.httpRequestTimeoutMs;
  const options = {
    keepAliveTimeout: 65_000,
    requestTimeout,
    headersTimeout: Math.max(1000, Math.floor(requestTimeout / 3)),
    connectionsCheckingInterval: 1000,
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    void route(ctx, req, res, surface);
  };
  const server: Server = tls
    ? createHttpsServer({ ...options, ...tls.options() }, handle)
    : createServer(options, handle);
  if (tls) tls.onChange(() => (server as HttpsServer).setSecureContext(tls.options()));
  server.maxConnections = ctx.config.httpMaxConnections;
  // Errors of Node's own parser get a JSON body too, like every other error.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, error, message] = parserError(err.code);
    const body = JSON.stringify({ error, message });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
