/**
 * The benchmark's HTTP client for the dynamo-kv API: one undici Pool per endpoint, requests spread
 * round-robin, every response body consumed so connections are reused. Calls return the status code and
 * throw only on network errors.
 */
import { type Dispatcher, Pool } from 'undici';
import { DynamoClient } from '../node/src/client/client.js';
import { NotFoundError } from '../node/src/errors.js';

/** What a benchmark phase needs from a client: one call per operation, answered with an HTTP status. */
export interface KvClient {
  get(bucket: string, key: string, signal?: AbortSignal): Promise<number>;
  put(bucket: string, key: string, value: Buffer, signal?: AbortSignal): Promise<number>;
  close(): Promise<void>;
}

/** Bucket replication settings as in `PUT /buckets/{b}/props`. */
export interface BucketProps {
  n?: number;
  r?: number;
  w?: number;
  [other: string]: unknown;
}

// Read every body into memory, as an application reading the value does (and as DynamoClient does),
// so the two routing modes are compared doing the same client work.
async function consume(body: Dispatcher.ResponseData['body']): Promise<void> {
  await body.arrayBuffer();
}

const VALUE_CONTENT_TYPE = 'application/octet-stream';

/** Any-node coordination: requests spread round-robin over the nodes, as behind a load balancer. */
export class KvHttpClient implements KvClient {
  private readonly pools: Pool[];
  private turn = 0;
  /**
   * The last context seen per key. Updates send it, as an application does: a blind write is concurrent
   * with every stored version, so a benchmark of blind updates would measure sibling growth on hot keys.
   */
  private readonly contexts = new Map<string, string>();

  /** `concurrency` is the total number of clients; each endpoint gets an equal share of connections. */
  constructor(
    readonly endpoints: readonly string[],
    concurrency: number,
    timeoutMs = 30_000,
  ) {
    if (endpoints.length === 0) throw new Error('no endpoints');
    const connections = Math.ceil(concurrency / endpoints.length);
    this.pools = endpoints.map(
      (origin) =>
        new Pool(origin, { connections, pipelining: 1, headersTimeout: timeoutMs, bodyTimeout: timeoutMs }),
    );
  }

  private pool(): Pool {
    const pool = this.pools[this.turn % this.pools.length]!;
    this.turn = (this.turn + 1) % this.pools.length;
    return pool;
  }

  /** GET a key; 200, 300 (siblings) and 404 are all returned as statuses. */
  async get(bucket: string, key: string, signal?: AbortSignal): Promise<number> {
    const path = keyPath(bucket, key);
    const { statusCode, headers, body } = await this.pool().request({ method: 'GET', path, signal });
    await consume(body);
    this.remember(path, headers);
    return statusCode;
  }

  /** PUT of a value with the last context this client saw for the key (none for YCSB's inserts). */
  async put(bucket: string, key: string, value: Buffer, signal?: AbortSignal): Promise<number> {
    const path = keyPath(bucket, key);
    const context = this.contexts.get(path);
    const { statusCode, headers, body } = await this.pool().request({
      method: 'PUT',
      path,
      headers: context
        ? { 'content-type': VALUE_CONTENT_TYPE, 'x-dynamo-context': context }
        : { 'content-type': VALUE_CONTENT_TYPE },
      body: value,
      signal,
    });
    await consume(body);
    this.remember(path, headers);
    return statusCode;
  }

  private remember(path: string, headers: Dispatcher.ResponseData['headers']): void {
    const context = headers['x-dynamo-context'];
    if (typeof context === 'string') this.contexts.set(path, context);
  }

  /** Sets bucket props through the first endpoint; throws with the server's answer unless 2xx. */
  async setBucketProps(bucket: string, props: BucketProps): Promise<void> {
    const { statusCode, body } = await this.pools[0]!.request({
      method: 'PUT',
      path: propsPath(bucket),
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(props),
    });
    const text = await body.text();
    if (statusCode < 200 || statusCode >= 300) {
      throw new Error(`PUT ${propsPath(bucket)} answered ${statusCode}: ${text.slice(0, 300)}`);
    }
  }

  /** Reads bucket props through the first endpoint, or undefined if the server does not answer 200 JSON. */
  async getBucketProps(bucket: string): Promise<BucketProps | undefined> {
    try {
      const { statusCode, body } = await this.pools[0]!.request({ method: 'GET', path: propsPath(bucket) });
      const text = await body.text();
      return statusCode === 200 ? (JSON.parse(text) as BucketProps) : undefined;
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((pool) => pool.close()));
  }
}

function keyPath(bucket: string, key: string): string {
  return `/buckets/${encodeURIComponent(bucket)}/keys/${encodeURIComponent(key)}`;
}

function propsPath(bucket: string): string {
  return `/buckets/${encodeURIComponent(bucket)}/props`;
}

/**
 * Client routing: the product's DynamoClient sends each request to a replica of its key. Updates carry
 * the last context seen for the key, like KvHttpClient, so both modes do the same work.
 */
export class RoutedKvClient implements KvClient {
  private readonly client: DynamoClient;
  private readonly contexts = new Map<string, string>();

  constructor(endpoints: readonly string[], concurrency: number, timeoutMs = 30_000) {
    this.client = new DynamoClient({
      seeds: [...endpoints],
      connectionsPerNode: Math.ceil(concurrency / endpoints.length),
      timeoutMs,
      retries: 0,
    });
  }

  /** Learns the ring before the clock starts, so no phase pays for it. */
  prepare(): Promise<void> {
    return this.client.refreshRing();
  }

  async get(bucket: string, key: string): Promise<number> {
    try {
      const got = await this.client.get(bucket, key);
      this.contexts.set(`${bucket}/${key}`, got.context);
      return 'siblings' in got ? 300 : 200;
    } catch (err) {
      if (err instanceof NotFoundError) return 404;
      const status = (err as { status?: number }).status;
      if (typeof status === 'number') return status;
      throw err;
    }
  }

  async put(bucket: string, key: string, value: Buffer): Promise<number> {
    const id = `${bucket}/${key}`;
    try {
      const { context } = await this.client.put(bucket, key, value, {
        context: this.contexts.get(id),
        contentType: VALUE_CONTENT_TYPE,
      });
      this.contexts.set(id, context);
      return 204;
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (typeof status === 'number') return status;
      throw err;
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
