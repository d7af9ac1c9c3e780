/**
 * The benchmark's client: the product's DynamoClient, in either routing mode, behind the small interface
 * a phase needs. Every call answers with an HTTP-like status; only network errors throw.
 */
import { type BucketProps, DynamoClient } from '../node/src/client/client.js';
import type { Routing } from '../node/src/client/router.js';
import { NotFoundError } from '../node/src/errors.js';

export type { BucketProps };

/** A read's status and how many values it met (1: one value, k > 1: k siblings, 0: none). */
export interface ReadOutcome {
  status: number;
  values: number;
}

/** What a benchmark phase needs from a client: one call per operation, answered with a status. */
export interface KvClient {
  get(bucket: string, key: string): Promise<ReadOutcome>;
  put(bucket: string, key: string, value: Buffer): Promise<number>;
  close(): Promise<void>;
}

const VALUE_CONTENT_TYPE = 'application/octet-stream';

/** An error answer's status; anything else (a network error) is rethrown for the runner to count. */
function statusOf(err: unknown): number {
  if (err instanceof NotFoundError) return 404;
  const status = (err as { status?: unknown }).status;
  if (typeof status === 'number') return status;
  throw err;
}

/**
 * DynamoClient with routing 'any' (requests spread over all nodes, as behind a load balancer, the
 * coordinator forwarding to replicas) or 'preference-list' (each request sent to a replica of its key).
 * Updates carry the last context seen for the key, as applications do: a blind write is concurrent with
 * every stored version, so a benchmark of blind updates would measure sibling growth on hot keys.
 */
export class BenchClient implements KvClient {
  private readonly client: DynamoClient;
  private readonly contexts = new Map<string, string>();

  constructor(
    endpoints: readonly string[],
    concurrency: number,
    routing: Routing,
    token: string | undefined,
    ca?: Buffer,
    timeoutMs = 30_000,
  ) {
    this.client = new DynamoClient({
      seeds: [...endpoints],
      routing,
      connectionsPerNode: Math.ceil(concurrency / endpoints.length),
      timeoutMs,
      retries: 0,
      ...(token ? { token } : {}),
      ...(ca ? { ca } : {}),
    });
  }

  /** Learns the ring before the clock starts, so no phase pays for it. */
  prepare(): Promise<void> {
    return this.client.refreshRing();
  }

  async get(bucket: string, key: string): Promise<ReadOutcome> {
    try {
      const got = await this.client.get(bucket, key);
      this.contexts.set(`${bucket}/${key}`, got.context);
      return 'siblings' in got ? { status: 300, values: got.siblings.length } : { status: 200, values: 1 };
    } catch (err) {
      return { status: statusOf(err), values: 0 };
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
      return statusOf(err);
    }
  }

  setBucketProps(bucket: string, props: Partial<BucketProps>): Promise<BucketProps> {
    return this.client.setProps(bucket, props);
  }

  getBucketProps(bucket: string): Promise<BucketProps> {
    return this.client.getProps(bucket);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
