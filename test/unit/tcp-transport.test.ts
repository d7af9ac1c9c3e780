import { connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  InvalidRequestError,
  PeerUnavailableError,
  RemoteError,
  RequestTimeoutError,
} from '../../node/src/errors.js';
import { encodeFrame, type Frame, FrameDecoder, FrameKind } from '../../node/src/transport/frame.js';
import { PROTOCOL_VERSION, TcpTransport, type TcpTransportOptions } from '../../node/src/transport/tcp.js';
import type { RequestHandler } from '../../node/src/transport/transport.js';

const HOST = '127.0.0.1';
const open: TcpTransport[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

/** A transport on 127.0.0.1 whose peers resolve through `ports` (node id → port). */
function transport(
  self: string,
  ports: Map<string, number>,
  cluster = 'test',
  port = 0,
  limits: Partial<Pick<TcpTransportOptions, 'handshakeTimeoutMs' | 'idleTimeoutMs' | 'maxHandshakes'>> = {},
): TcpTransport {
  const t = new TcpTransport({
    ...limits,
    self,
    cluster,
    host: HOST,
    port,
    resolve: (peer) => {
      const p = ports.get(peer);
      return p === undefined ? undefined : `${HOST}:${p}`;
    },
  });
  open.push(t);
  return t;
}

/** Starts a server transport `b` running `handler` and a client transport `a` that can reach it. */
async function pair(handler: RequestHandler, opts: { serverCluster?: string } = {}) {
  const ports = new Map<string, number>();
  const server = transport('b', ports, opts.serverCluster ?? 'test');
  await server.listen(handler);
  ports.set('b', server.port);
  const client = transport('a', ports);
  await client.listen(async () => null);
  ports.set('a', client.port);
  return { client, server, ports };
}

/** A port that was free a moment ago: nothing listens on it. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, HOST, resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts the connections client opens from now on. */
function countConnections(client: TcpTransport): () => number {
  let connections = 0;
  const target = client as unknown as { connect: (p: string) => unknown };
  const connect = target.connect.bind(client);
  target.connect = (p: string) => {
    connections++;
    return connect(p);
  };
  return () => connections;
}

describe('TcpTransport', () => {
  it('delivers a request to the peer handler with the sender id and resolves with its reply', async () => {
    const seen: Array<{ from: string; body: unknown }> = [];
    const { client } = await pair(async (from, body) => {
      seen.push({ from, body });
      return { echo: body, value: Buffer.from('bytes') };
    });
    const reply = (await client.request('b', { op: 'get', k: 'x' }, 2000)) as {
      echo: unknown;
      value: Buffer;
    };
    expect(reply.echo).toEqual({ op: 'get', k: 'x' });
    expect(reply.value.toString()).toBe('bytes');
    expect(seen).toEqual([{ from: 'a', body: { op: 'get', k: 'x' } }]);
  });

  it('resolves with null when the handler returns undefined', async () => {
    const { client } = await pair(async () => undefined);
    await expect(client.request('b', 1, 2000)).resolves.toBeNull();
  });

  it('multiplexes 200 concurrent requests over one connection, each getting its own reply when answered out of order', async () => {
    const { client, server } = await pair(async (_from, body) => {
      const { i } = body as { i: number };
      await sleep(Math.random() * 50);
      return { i, square: i * i };
    });
    const order: number[] = [];
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        client.request('b', { i }, 5000).then((r) => {
          order.push(i);
          return r;
        }),
      ),
    );
    replies.forEach((r, i) => {
      expect(r).toEqual({ i, square: i * i });
    });
    // With random delays the replies cannot all have come back in request order.
    expect(order).not.toEqual([...order].sort((x, y) => x - y));
    const inbound = (server as unknown as { inbound: Set<unknown> }).inbound;
    expect(inbound.size).toBe(1);
  });

  it('rejects with RemoteError carrying the DynamoError code when the handler throws one', async () => {
    const { client } = await pair(async () => {
      throw new InvalidRequestError('x_code', 'bad thing');
    });
    const err = await client.request('b', {}, 2000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe('x_code');
    expect((err as RemoteError).peer).toBe('b');
    expect((err as RemoteError).message).toContain('bad thing');
  });

  it("rejects with RemoteError code 'internal' when the handler throws a plain Error, without its text", async () => {
    const { client } = await pair(async () => {
      throw new Error('kaput at /secret/path');
    });
    const err = await client.request('b', {}, 2000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe('internal');
    expect((err as RemoteError).message).not.toContain('kaput');
    expect((err as RemoteError).message).toContain('internal error');
  });

  it('keeps serving requests on the same connection after a handler error', async () => {
    let calls = 0;
    const { client } = await pair(async () => {
      calls++;
      if (calls === 1) throw new Error('first fails');
      return 'ok';
    });
    await expect(client.request('b', {}, 2000)).rejects.toBeInstanceOf(RemoteError);
    await expect(client.request('b', {}, 2000)).resolves.toBe('ok');
  });

  it('rejects quickly with PeerUnavailableError when nothing listens on the peer port', async () => {
    const ports = new Map([['b', await closedPort()]]);
    const client = transport('a', ports);
    const started = Date.now();
    const err = await client.request('b', {}, 5000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerUnavailableError);
    expect((err as PeerUnavailableError).peer).toBe('b');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('rejects with RequestTimeoutError after the timeout when the handler never answers', async () => {
    const { client } = await pair(() => new Promise(() => undefined));
    const started = Date.now();
    const err = await client.request('b', {}, 150).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(RequestTimeoutError);
    expect((err as RequestTimeoutError).timeoutMs).toBe(150);
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(2000);
  });

  it('still answers other requests on the connection after one timed out', async () => {
    const { client } = await pair(async (_from, body) => {
      if (body === 'hang') return new Promise(() => undefined);
      return 'fine';
    });
    await expect(client.request('b', 'hang', 100)).rejects.toBeInstanceOf(RequestTimeoutError);
    await expect(client.request('b', 'other', 2000)).resolves.toBe('fine');
  });

  it('rejects an in-flight request with PeerUnavailableError when the peer shuts down', async () => {
    let arrived!: () => void;
    const handled = new Promise<void>((r) => {
      arrived = r;
    });
    const { client, server } = await pair(() => {
      arrived();
      return new Promise(() => undefined);
    });
    const pending = client.request('b', {}, 10_000).catch((e: unknown) => e);
    await handled;
    const started = Date.now();
    await server.close(100);
    const err = await pending;
    expect(err).toBeInstanceOf(PeerUnavailableError);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('reconnects at once when the peer advertises a new address (the old one stays silent)', async () => {
    const ports = new Map<string, number>();
    const old = transport('b', ports);
    await old.listen(() => new Promise(() => undefined)); // the old address: accepted, never answers
    ports.set('b', old.port);
    const moved = transport('b', ports);
    await moved.listen(async () => 'from the new address');
    const client = transport('a', ports);
    await client.listen(async () => null);
    await expect(client.request('b', 'x', 200)).rejects.toBeInstanceOf(RequestTimeoutError);
    ports.set('b', moved.port); // gossip learned the new address
    await expect(client.request('b', 'x', 2000)).resolves.toBe('from the new address');
  });

  it('closes a connection on which nothing came back before a timeout, so the next request reconnects', async () => {
    let hang = true;
    const ports = new Map<string, number>();
    const server = transport('b', ports);
    await server.listen(async () => {
      if (hang) return new Promise(() => undefined);
      return 'answered';
    });
    ports.set('b', server.port);
    const client = transport('a', ports);
    await client.listen(async () => null);
    const connections = countConnections(client);
    await expect(client.request('b', 'x', 100)).rejects.toBeInstanceOf(RequestTimeoutError);
    hang = false;
    await expect(client.request('b', 'y', 2000)).resolves.toBe('answered');
    expect(connections()).toBe(2);
  });

  it('closes it too when the request went out in the millisecond the last frame came in', async () => {
    // A frozen clock: every frame and request share one millisecond (on a busy machine many do).
    const now = Date.now();
    const clock = vi.spyOn(Date, 'now').mockReturnValue(now);
    try {
      let hang = false;
      const ports = new Map<string, number>();
      const server = transport('b', ports);
      await server.listen(async () => (hang ? new Promise(() => undefined) : 'answered'));
      ports.set('b', server.port);
      const client = transport('a', ports);
      await client.listen(async () => null);
      const connections = countConnections(client);
      await expect(client.request('b', 'x', 2000)).resolves.toBe('answered');
      hang = true;
      await expect(client.request('b', 'y', 100)).rejects.toBeInstanceOf(RequestTimeoutError);
      hang = false;
      await expect(client.request('b', 'z', 2000)).resolves.toBe('answered');
      expect(connections()).toBe(2);
    } finally {
      clock.mockRestore();
    }
  });

  it('answers the requests in flight before it closes (a graceful shutdown loses no reply)', async () => {
    let arrived!: () => void;
    const handled = new Promise<void>((r) => {
      arrived = r;
    });
    const { client, server } = await pair(async () => {
      arrived();
      await new Promise((r) => setTimeout(r, 200));
      return 'stored';
    });
    const pending = client.request('b', {}, 10_000);
    await handled;
    await server.close();
    await expect(pending).resolves.toBe('stored');
  });

  it('reaches a peer again once it comes back on the same port', async () => {
    const { client, server, ports } = await pair(async () => 'first life');
    await expect(client.request('b', {}, 2000)).resolves.toBe('first life');
    const port = server.port;
    await server.close();
    // While the peer is down requests fail, which also arms the reconnect backoff.
    await expect(client.request('b', {}, 2000)).rejects.toBeInstanceOf(PeerUnavailableError);
    await expect(client.request('b', {}, 2000)).rejects.toBeInstanceOf(PeerUnavailableError);

    const revived = transport('b', ports, 'test', port);
    await revived.listen(async () => 'second life');
    const deadline = Date.now() + 3000;
    let reply: unknown;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        reply = await client.request('b', {}, 1000);
        break;
      } catch (err) {
        last = err;
        expect(err).toBeInstanceOf(PeerUnavailableError);
        await sleep(50);
      }
    }
    expect(reply, `last error: ${String(last)}`).toBe('second life');
  });

  it('refuses a peer of another cluster with PeerUnavailableError, without disclosing its own cluster name', async () => {
    const handled: unknown[] = [];
    const { client } = await pair(
      async (_from, body) => {
        handled.push(body);
        return 'should not happen';
      },
      { serverCluster: 'other-cluster' },
    );
    const err = await client.request('b', { op: 'get' }, 2000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerUnavailableError);
    expect((err as Error).message).toContain('cluster');
    expect((err as Error).message).not.toContain('other-cluster');
    expect(handled).toEqual([]);
  });

  it('rejects a request to a peer id it cannot resolve with PeerUnavailableError', async () => {
    const client = transport('a', new Map());
    const err = await client.request('nobody', {}, 2000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerUnavailableError);
    expect((err as PeerUnavailableError).peer).toBe('nobody');
    expect((err as Error).message).toContain('unknown peer');
  });

  it('rejects requests made after close with PeerUnavailableError', async () => {
    const { client } = await pair(async () => 'ok');
    await client.close();
    await expect(client.request('b', {}, 2000)).rejects.toBeInstanceOf(PeerUnavailableError);
  });

  describe('bounds on the peer port', () => {
    /** A raw TCP connection to port; resolves once it is open, with a promise of its close. */
    const raw = (port: number) =>
      new Promise<{ socket: Socket; closed: Promise<void> }>((resolve, reject) => {
        const socket = connect(port, HOST, () => resolve({ socket, closed }));
        const closed = new Promise<void>((r) => socket.once('close', () => r()));
        socket.on('error', () => undefined);
        socket.once('error', reject);
      });

    it('closes a connection whose first frame announces more than a hello, before buffering it', async () => {
      const server = transport('b', new Map());
      await server.listen(async () => 'never');
      const { socket, closed } = await raw(server.port);
      const header = Buffer.alloc(9);
      header.writeUInt32BE(64 * 1024 * 1024, 0);
      socket.write(header);
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024);
      // The node closes as soon as it has read the length: most of what follows is never accepted.
      const writing = (async () => {
        while (!socket.destroyed && sent < 64 * 1024 * 1024) {
          if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r).once('close', r));
          sent += chunk.length;
        }
      })();
      await closed;
      await writing;
      expect(sent).toBeLessThan(16 * 1024 * 1024);
    });

    it('closes a connection that says no hello within the handshake timeout, and serves peers meanwhile', async () => {
      const ports = new Map<string, number>();
      const server = transport('b', ports, 'test', 0, { handshakeTimeoutMs: 300 });
      await server.listen(async () => 'pong');
      ports.set('b', server.port);
      const idle = await Promise.all(Array.from({ length: 20 }, () => raw(server.port)));
      const client = transport('a', ports);
      expect(await client.request('b', { op: 'ping' }, 2000)).toBe('pong');
      const started = Date.now();
      await Promise.all(idle.map((c) => c.closed));
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('refuses connections beyond the number allowed to wait for their hello', async () => {
      const ports = new Map<string, number>();
      const server = transport('b', ports, 'test', 0, { maxHandshakes: 5, handshakeTimeoutMs: 60_000 });
      await server.listen(async () => 'pong');
      ports.set('b', server.port);
      const waiting = await Promise.all(Array.from({ length: 5 }, () => raw(server.port)));
      const extra = await raw(server.port);
      await extra.closed;
      expect(waiting.every((c) => !c.socket.destroyed)).toBe(true);
      for (const c of waiting) c.socket.destroy();
      await Promise.all(waiting.map((c) => c.closed));
      // Their slots are free again: a real peer gets in.
      const client = transport('a', ports);
      expect(await client.request('b', { op: 'ping' }, 2000)).toBe('pong');
    });

    it('refuses a hello of a protocol older than it speaks, and accepts its own', async () => {
      const server = transport('b', new Map());
      await server.listen(async () => 'pong');
      const helloWith = async (protocol: number) => {
        const { socket, closed } = await raw(server.port);
        const decoder = new FrameDecoder();
        const answer = new Promise<Frame>((r) => socket.on('data', (d) => r(decoder.push(d)[0]!)));
        for (const part of encodeFrame(FrameKind.Hello, 0, { cluster: 'test', node: 'x', protocol }))
          socket.write(part);
        const frame = await answer;
        socket.destroy();
        await closed;
        return frame;
      };
      const old = await helloWith(0);
      expect(old.kind).toBe(FrameKind.ErrorReply);
      expect((old.payload as { code: string }).code).toBe('protocol_mismatch');
      const current = await helloWith(PROTOCOL_VERSION);
      expect(current.kind).toBe(FrameKind.HelloOk);
      expect((current.payload as { protocol: number }).protocol).toBe(PROTOCOL_VERSION);
    });

    it('closes a connection that said hello and then stays silent past the idle timeout', async () => {
      const server = transport('b', new Map(), 'test', 0, { idleTimeoutMs: 300, handshakeTimeoutMs: 60_000 });
      await server.listen(async () => 'pong');
      const { socket, closed } = await raw(server.port);
      const greeted = new Promise<void>((r) => socket.once('data', () => r()));
      for (const part of encodeFrame(FrameKind.Hello, 0, { cluster: 'test', node: 'x' })) socket.write(part);
      await greeted;
      const started = Date.now();
      await closed;
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(Date.now() - started).toBeLessThan(3000);
    });
  });
});
