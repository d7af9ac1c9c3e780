/**
 * In-memory transport for unit tests of coordinator logic: every node of an InMemoryNetwork can
 * be taken down, slowed or made to hang, and payloads are copied through msgpack as on the wire.
 */
import { Packr } from 'msgpackr';
import { DynamoError, PeerUnavailableError, RemoteError, RequestTimeoutError } from '../errors.js';
import type { RequestHandler, Transport } from './transport.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const copy = (v: unknown): unknown => packr.unpack(packr.pack(v ?? null));

interface NodeState {
  handler?: RequestHandler;
  down: boolean;
  /** Extra delay before the node handles a request; Infinity = never answers. */
  delayMs: number;
}

export class InMemoryNetwork {
  private readonly nodes = new Map<string, NodeState>();
  /** Every request sent, in order, for assertions. */
  readonly log: Array<{ from: string; to: string; body: unknown }> = [];

  transport(id: string): Transport {
    this.state(id);
    return new InMemoryTransport(this, id);
  }

  /** A down node refuses connections: requests to it fail at once with PeerUnavailableError. */
  setDown(id: string, down: boolean): void {
    this.state(id).down = down;
  }

  /** Delays the node's handling of requests; Infinity makes it hang (callers time out). */
  setDelay(id: string, delayMs: number): void {
    this.state(id).delayMs = delayMs;
  }

  state(id: string): NodeState {
    let s = this.nodes.get(id);
    if (!s) {
      s = { down: false, delayMs: 0 };
      this.nodes.set(id, s);
    }
    return s;
  }

  async deliver(from: string, to: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const target = this.nodes.get(to);
    if (!target?.handler || target.down) throw new PeerUnavailableError(to, 'connection refused');
    this.log.push({ from, to, body });
    const work = (async () => {
      if (target.delayMs === Number.POSITIVE_INFINITY) await new Promise(() => undefined);
      if (target.delayMs > 0) await new Promise((r) => setTimeout(r, target.delayMs));
      if (target.down) throw new PeerUnavailableError(to, 'connection lost');
      try {
        return copy(await target.handler!(from, copy(body)));
      } catch (err) {
        if (err instanceof PeerUnavailableError) throw err;
        if (err instanceof DynamoError) throw new RemoteError(to, err.code, err.message, err.details());
        throw new RemoteError(to, 'internal', (err as Error).message);
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RequestTimeoutError(to, timeoutMs)), timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

class InMemoryTransport implements Transport {
  constructor(
    private readonly net: InMemoryNetwork,
    private readonly self: string,
  ) {}

  request(peer: string, body: unknown, timeoutMs: number): Promise<unknown> {
    return this.net.deliver(this.self, peer, body, timeoutMs);
  }

  async listen(handler: RequestHandler): Promise<void> {
    this.net.state(this.self).handler = handler;
  }

  async close(): Promise<void> {
    this.net.state(this.self).handler = undefined;
  }
}
