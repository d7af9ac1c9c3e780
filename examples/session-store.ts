/**
 * A session store on dynamo-kv's time-to-live: a session disappears by itself when it has not been
 * touched for its lifetime, on every replica at the same moment (the expiry is part of the stored
 * version). The bucket resolves conflicts last-writer-wins: a session is one user's, and the newest
 * touch is the one that counts.
 *
 * Run against `npm start`:  npm run build && node dist/examples/session-store.js
 * (Applications import DynamoClient from 'dynamo-kv'; this example uses the source tree.)
 */
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { clientOptionsFromEnv, DynamoClient, NotFoundError } from '../node/src/index.js';

export interface SessionStoreOptions {
  bucket?: string;
  /** Lifetime of an untouched session, in seconds. */
  ttlSeconds?: number;
}

export class SessionStore {
  private readonly bucket: string;
  private readonly ttl: number;

  constructor(
    private readonly client: DynamoClient,
    options: SessionStoreOptions = {},
  ) {
    this.bucket = options.bucket ?? 'sessions';
    this.ttl = options.ttlSeconds ?? 1800;
  }

  /** Makes the bucket last-writer-wins with the session lifetime as its default ttl. */
  async init(): Promise<void> {
    await this.client.setProps(this.bucket, { conflict: 'lww', ttl: this.ttl });
  }

  /** Stores a new session and returns its id. */
  async create(data: Record<string, unknown>): Promise<string> {
    const id = randomUUID();
    await this.write(id, data);
    return id;
  }

  /** The session's data, or undefined when it expired or never existed. */
  async get(id: string): Promise<Record<string, unknown> | undefined> {
    try {
      const got = await this.client.get(this.bucket, id);
      const value = 'siblings' in got ? got.siblings[0]!.value : got.value;
      return JSON.parse(value.toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** Extends a live session's lifetime (sliding expiration); false when it already expired. */
  async touch(id: string): Promise<boolean> {
    const data = await this.get(id);
    if (!data) return false;
    await this.write(id, data);
    return true;
  }

  async destroy(id: string): Promise<void> {
    await this.client.delete(this.bucket, id);
  }

  private async write(id: string, data: Record<string, unknown>): Promise<void> {
    await this.client.put(this.bucket, id, JSON.stringify(data), {
      contentType: 'application/json',
      ttl: this.ttl,
    });
  }
}

async function main(): Promise<void> {
  // npm start turns TLS and authentication on: export DYNAMO_TOKEN and DYNAMO_CA as it prints.
  const client = new DynamoClient(clientOptionsFromEnv());
  const sessions = new SessionStore(client, { bucket: 'demo-sessions', ttlSeconds: 2 });
  try {
    await sessions.init();
    const id = await sessions.create({ user: 'ada', cart: 'demo' });
    console.log(`session ${id}:`, await sessions.get(id));
    await new Promise((r) => setTimeout(r, 1500));
    console.log('touched before expiry:', await sessions.touch(id));
    await new Promise((r) => setTimeout(r, 1500));
    console.log('still there 3 s after creation thanks to the touch:', await sessions.get(id));
    await new Promise((r) => setTimeout(r, 2100));
    console.log('after 2 s untouched:', await sessions.get(id));
  } finally {
    await client.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(`session-store: ${err.message}; is the cluster running (npm start)?`);
    process.exit(1);
  });
}
