/**
 * DynamoClient: the TypeScript client of dynamo-kv. It learns the ring from any node and sends each
 * request to a live node of the key's preference list (saving the coordinator's extra hop), reuses
 * connections, retries where that is safe, and turns error answers into typed errors.
 */
import { Agent } from 'undici';
import {
  DynamoHttpError,
  InvalidRequestError,
  NotFoundError,
  QuorumNotMetError,
  TooManySiblingsError,
  UnresolvedSiblingsError,
  ValueTooLargeError,
} from '../errors.js';
import { type RingView, Router, type Routing } from './router.js';

export type Quorum = number | 'one' | 'quorum' | 'all';
export type Value = Buffer | Uint8Array | string;

export interface DynamoClientOptions {
  /** HTTP URLs of one or more nodes, e.g. ['http://127.0.0.1:8081']. Any reachable one is enough. */
  seeds: string[];
  /** 'preference-list' (default) sends each request to a replica of its key; 'any' spreads them over all nodes. */
  routing?: Routing;
  /** Time one attempt may take, in ms (default 10000). */
  timeoutMs?: number;
  /** Extra attempts on another node after a failure that is safe to retry (default 2). */
  retries?: number;
  /** How often to refresh the ring view, in ms (default 30000); it is also refreshed after routing errors. */
  ringRefreshMs?: number;
  /** Keep-alive connections per node (default 16). */
  connectionsPerNode?: number;
  /** Bearer token sent with every request, for nodes started with --auth-tokens-file. */
  token?: string;
  /** CA certificate(s) (PEM) to trust for https:// seeds (nodes started with --http-tls-cert). */
  ca?: string | Buffer;
  /**
   * A client certificate and its key (PEM), for nodes started with --http-client-ca: its subject OU
   * (read, write or admin) is the client's role, no token needed.
   */
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface Sibling {
  value: Buffer;
  contentType: string;
  lastModified: Date;
  expiresAt?: Date;
}

/** A read: one value, or the concurrent siblings to resolve; both carry the context to write with. */
export type GetResult =
  | { value: Buffer; contentType: string; lastModified: Date; expiresAt?: Date; context: string }
  | { siblings: Sibling[]; context: string };

export interface ReadOptions {
  r?: Quorum;
  timeoutMs?: number;
}

export interface WriteOptions {
  /** Context of the read this write is based on; it supersedes the versions that read saw. */
  context?: string;
  contentType?: string;
  w?: Quorum;
  /** Time to live in seconds; 0 = never expire; default: the bucket's. */
  ttl?: number;
  /** Count only the key's true replicas towards w (no stand-ins for replicas that are down). */
  strict?: boolean;
  timeoutMs?: number;
}

export interface UpdateOptions extends Omit<WriteOptions, 'context'> {
  r?: Quorum;
  /** Merges concurrent siblings into one value; needed whenever a read finds siblings. */
  resolve?: (siblings: Sibling[]) => Value;
  /** Resolve-and-write rounds while concurrent writers keep adding siblings (default 10). */
  maxAttempts?: number;
}

export interface BucketProps {
  n: number;
  r: number;
  w: number;
  conflict: 'siblings' | 'lww';
  ttl: number;
}

interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

interface Attempt {
  method: 'GET' | 'PUT' | 'DELETE';
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  timeoutMs?: number;
  /** Whether a failure after the request may have reached a node can be retried. */
  idempotent: boolean;
}

const header = (r: Response, name: string) => {
  const v = r.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

const keyPath = (bucket: string, key: string) =>
  `/buckets/${encodeURIComponent(bucket)}/keys/${encodeURIComponent(key)}`;

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

const toBuffer = (v: Value): Buffer => (typeof v === 'string' ? Buffer.from(v) : Buffer.from(v));

/** Errors that mean the request never reached a node, so any request may be retried elsewhere. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

function parseSiblings(body: Buffer): { siblings: Sibling[]; context: string } {
  const json = JSON.parse(body.toString('utf8')) as {
    context: string;
    siblings: Array<{ value: string; contentType: string; lastModified: string; expiresAt?: string }>;
  };
  return {
    context: json.context,
    siblings: json.siblings.map((s) => ({
      value: Buffer.from(s.value, 'base64'),
      contentType: s.contentType,
      lastModified: new Date(s.lastModified),
      ...(s.expiresAt ? { expiresAt: new Date(s.expiresAt) } : {}),
    })),
  };
}

function parseValue(r: Response): GetResult {
  if (r.status === 300) return parseSiblings(r.body);
  const expires = header(r, 'x-dynamo-expires');
  return {
    value: r.body,
    contentType: header(r, 'content-type') ?? 'application/octet-stream',
    lastModified: new Date(header(r, 'last-modified') ?? 0),
    ...(expires ? { expiresAt: new Date(expires) } : {}),
    context: header(r, 'x-dynamo-context') ?? '',
  };
}

/** Turns an error answer into the typed error it stands for. */
function errorOf(r: Response): Error {
  let body: {
    error?: string;
    message?: string;
    needed?: number;
    got?: number;
    limit?: number;
    siblings?: number;
  } = {};
  try {
    body = JSON.parse(r.body.toString('utf8'));
  } catch {
    // not JSON: keep the status
  }
  const message = body.message ?? `HTTP ${r.status}`;
  if (r.status === 404) return new NotFoundError(message, header(r, 'x-dynamo-context'));
  if (r.status === 503 && body.error === 'quorum_not_met')
    return new QuorumNotMetError('request', body.needed ?? 0, body.got ?? 0);
  if (r.status === 413) return new ValueTooLargeError(body.limit ?? 0);
  if (r.status === 409 && body.error === 'too_many_siblings') {
    return new TooManySiblingsError(Number(body.siblings), Number(body.limit));
  }
  if (r.status === 400) return new InvalidRequestError(body.error ?? 'invalid_request', message);
  return new DynamoHttpError(r.status, body.error ?? 'http_error', message);
}

export class DynamoClient {
  private readonly router: Router;
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly refreshTimer: NodeJS.Timeout;
  private refreshing: Promise<void> | undefined;
  private closed = false;

  private readonly authorization: string | undefined;

  constructor(options: DynamoClientOptions) {
    if (!options.seeds?.length)
      throw new InvalidRequestError('invalid_client', 'DynamoClient needs at least one seed URL');
    for (const seed of options.seeds) {
      if (!/^https?:\/\/[^/]+\/?$/.test(seed))
        throw new InvalidRequestError('invalid_client', `seed "${seed}" must be an http(s)://host:port URL`);
    }
    this.router = new Router(options.seeds, options.routing ?? 'preference-list');
    this.authorization = options.token ? `Bearer ${options.token}` : undefined;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = options.retries ?? 2;
    this.agent = new Agent({
      connections: options.connectionsPerNode ?? 16,
      keepAliveTimeout: 30_000,
      connect: {
        ...(options.ca ? { ca: options.ca } : {}),
        ...(options.cert ? { cert: options.cert } : {}),
        ...(options.key ? { key: options.key } : {}),
      },
    });
    this.refreshTimer = setInterval(
      () => void this.refreshRing().catch(() => undefined),
      options.ringRefreshMs ?? 30_000,
    );
    this.refreshTimer.unref();
  }

  /** Reads a key. Throws NotFoundError (with the tombstone's context, if any) when it is absent. */
  async get(bucket: string, key: string, options: ReadOptions = {}): Promise<GetResult> {
    const r = await this.send(bucket, key, 'read', {
      method: 'GET',
      path: keyPath(bucket, key) + query({ r: options.r }),
      timeoutMs: options.timeoutMs,
      idempotent: true,
    });
    if (r.status !== 200 && r.status !== 300) throw errorOf(r);
    return parseValue(r);
  }

  /** Writes a value, superseding the versions named by options.context; resolves with the new context. */
  async put(
    bucket: string,
    key: string,
    value: Value,
    options: WriteOptions = {},
  ): Promise<{ context: string }> {
    const r = await this.write(bucket, key, value, options, false);
    return { context: header(r, 'x-dynamo-context') ?? '' };
  }

  /** Deletes a key (a tombstone superseding options.context). */
  async delete(
    bucket: string,
    key: string,
    options: Pick<WriteOptions, 'context' | 'w' | 'timeoutMs'> = {},
  ): Promise<void> {
    const headers: Record<string, string> = options.context ? { 'x-dynamo-context': options.context } : {};
    const r = await this.send(bucket, key, 'write', {
      method: 'DELETE',
      path: keyPath(bucket, key) + query({ w: options.w }),
      headers,
      timeoutMs: options.timeoutMs,
      idempotent: Boolean(options.context),
    });
    if (r.status !== 204) throw errorOf(r);
  }

  /**
   * Read → resolve siblings with options.resolve → apply fn → write with the read's context. When a
   * concurrent write slipped in, the write comes back with siblings; they are resolved and written again
   * (fn is never applied twice) until one value remains or maxAttempts rounds pass. Once the first write
   * is stored this never throws for siblings: `resolved: false` says racing writers left siblings, which
   * hold this update's change and which the next read with a resolver merges. It throws
   * UnresolvedSiblingsError only when the read finds siblings and no resolve function was given.
   */
  async update(
    bucket: string,
    key: string,
    fn: (current: Buffer | undefined) => Value,
    options: UpdateOptions = {},
  ): Promise<{ value: Buffer; context: string; resolved: boolean }> {
    const { resolve, maxAttempts = 10, r, ...write } = options;
    let current: Buffer | undefined;
    let context: string | undefined;
    try {
      const read = await this.get(bucket, key, { r, timeoutMs: write.timeoutMs });
      context = read.context;
      if ('siblings' in read) {
        if (!resolve) throw new UnresolvedSiblingsError(read.siblings, read.context);
        current = toBuffer(resolve(read.siblings));
      } else current = read.value;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      context = err.context;
    }
    let next = toBuffer(fn(current));
    for (let attempt = 1; ; attempt++) {
      const stored = parseValue(await this.write(bucket, key, next, { ...write, context }, true));
      if (!('siblings' in stored)) return { value: stored.value, context: stored.context, resolved: true };
      if (!resolve || attempt >= maxAttempts)
        return { value: next, context: stored.context, resolved: false };
      // Our write and a concurrent one are now siblings: merge them and write the merge over both,
      // after a random pause that grows each round so racing writers stop colliding.
      next = toBuffer(resolve(stored.siblings));
      context = stored.context;
      await new Promise((res) => setTimeout(res, Math.random() * 10 * 2 ** Math.min(attempt, 5)));
    }
  }

  async getProps(bucket: string): Promise<BucketProps> {
    const r = await this.request(
      { method: 'GET', path: `/buckets/${encodeURIComponent(bucket)}/props`, idempotent: true },
      this.router.endpoints(),
    );
    if (r.status !== 200) throw errorOf(r);
    return JSON.parse(r.body.toString('utf8')) as BucketProps;
  }

  async setProps(bucket: string, props: Partial<BucketProps>): Promise<BucketProps> {
    const r = await this.request(
      {
        method: 'PUT',
        path: `/buckets/${encodeURIComponent(bucket)}/props`,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify(props)),
        idempotent: true,
      },
      this.router.endpoints(),
    );
    if (r.status !== 200) throw errorOf(r);
    return JSON.parse(r.body.toString('utf8')) as BucketProps;
  }

  /** The ring as the cluster reports it (fetched now). */
  async ring(): Promise<RingView> {
    const r = await this.request(
      { method: 'GET', path: '/admin/ring?tokens=true', idempotent: true },
      this.router.endpoints(),
    );
    if (r.status !== 200) throw errorOf(r);
    return JSON.parse(r.body.toString('utf8')) as RingView;
  }

  /** Fetches the ring view from any reachable node and routes by it from now on. */
  refreshRing(): Promise<void> {
    this.refreshing ??= this.ring()
      .then((view) => this.router.update(view))
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.refreshTimer);
    await this.agent.close();
  }

  private async write(
    bucket: string,
    key: string,
    value: Value,
    options: WriteOptions,
    returnBody: boolean,
  ): Promise<Response> {
    const headers: Record<string, string> = {
      'content-type': options.contentType ?? 'application/octet-stream',
    };
    if (options.context) headers['x-dynamo-context'] = options.context;
    const r = await this.send(bucket, key, 'write', {
      method: 'PUT',
      path:
        keyPath(bucket, key) +
        query({
          w: options.w,
          ttl: options.ttl,
          strict: options.strict ? 'true' : undefined,
          returnbody: returnBody ? 'true' : undefined,
        }),
      headers,
      body: toBuffer(value),
      timeoutMs: options.timeoutMs,
      // Resending the same context at worst adds a sibling of the same value; a write without one
      // could duplicate a blind write, so it is retried only when it surely never reached a node.
      idempotent: Boolean(options.context),
    });
    if (r.status !== 204 && r.status !== 200 && r.status !== 300) throw errorOf(r);
    return r;
  }

  /** Sends a key's request along the router's candidates. */
  private async send(
    bucket: string,
    key: string,
    kind: 'read' | 'write',
    attempt: Attempt,
  ): Promise<Response> {
    if (!this.router.hasRing) await this.refreshRing().catch(() => undefined);
    return this.request(attempt, this.router.candidates(bucket, key, kind));
  }

  /** Tries candidates in order; retries (with backoff) on failures that are safe to retry. */
  private async request(attempt: Attempt, candidates: string[]): Promise<Response> {
    if (this.closed) throw new Error('DynamoClient is closed');
    let lastError: Error | undefined;
    for (let i = 0; i <= this.retries; i++) {
      const origin = candidates[i % candidates.length]!;
      if (i > 0) await new Promise((r) => setTimeout(r, 25 * 2 ** i + Math.random() * 25));
      try {
        const res = await this.agent.request({
          origin,
          path: attempt.path,
          method: attempt.method,
          headers: this.authorization
            ? { ...attempt.headers, authorization: this.authorization }
            : attempt.headers,
          body: attempt.body,
          headersTimeout: attempt.timeoutMs ?? this.timeoutMs,
          bodyTimeout: attempt.timeoutMs ?? this.timeoutMs,
        });
        const body = Buffer.from(await res.body.arrayBuffer());
        const response: Response = { status: res.statusCode, headers: res.headers, body };
        if (res.statusCode === 503 && i < this.retries) {
          const err = errorOf(response);
          // not_ready: the node refused before doing anything (it has not rejoined its cluster), so
          // even a write without a context is safe to send to another node.
          if (attempt.idempotent || (err instanceof DynamoHttpError && err.code === 'not_ready')) {
            lastError = err;
            continue;
          }
        }
        return response;
      } catch (err) {
        lastError = err as Error;
        const code = (err as { code?: string }).code ?? '';
        this.router.markFailed(origin);
        void this.refreshRing().catch(() => undefined);
        if (!attempt.idempotent && !NOT_SENT.has(code)) throw err;
      }
    }
    throw lastError ?? new Error('request failed');
  }
}
