/**
 * The real transport: one persistent, multiplexed TCP connection per peer pair direction.
 * A connection opens with a hello naming the cluster and the node; a peer of another cluster is refused.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { DynamoError, PeerUnavailableError, RemoteError, RequestTimeoutError } from '../errors.js';
import { InFlight } from '../runtime/in-flight.js';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameKind,
  MAX_FRAME_BYTES,
  MAX_HELLO_FRAME_BYTES,
} from './frame.js';
import { certificateIdentity, type PeerTls } from './tls.js';
import type { RequestHandler, Transport } from './transport.js';

export interface TcpTransportOptions {
  self: string;
  cluster: string;
  host: string;
  port: number;
  /** host:port of a peer's transport, or undefined when the peer is unknown. */
  resolve: (peer: string) => string | undefined;
  /** How long to wait for a TCP connection to open. */
  connectTimeoutMs?: number;
  /** How long an inbound connection may take to say hello before it is closed. */
  handshakeTimeoutMs?: number;
  /** How long a connection may carry nothing before it is closed (the next request reconnects). */
  idleTimeoutMs?: number;
  /** Most inbound connections at once, and most of them still before their hello. */
  maxConnections?: number;
  maxHandshakes?: number;
  /**
   * Mutual TLS: peers must present a certificate of the cluster's CA, and a peer's node id is the one
   * its certificate names (a hello claiming another is refused). Undefined: plain TCP.
   */
  tls?: PeerTls;
  onError?: (err: Error, context: string) => void;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface HelloPayload {
  cluster: string;
  node: string;
  /** The peer protocol version the sender speaks (absent: 1, the version before the field existed). */
  protocol?: number;
}

/**
 * The peer protocol version this node speaks (the messages of protocol/schema.ts), and the oldest it
 * still talks to: during a rolling upgrade, old and new nodes tell each other apart by the hello.
 */
export const PROTOCOL_VERSION = 1;
export const MIN_PROTOCOL_VERSION = 1;

/** Writes frames; corks the socket so frames produced in one tick leave in one segment. */
function send(socket: Socket, kind: FrameKind, id: number, payload: unknown): void {
  const [header, body] = encodeFrame(kind, id, payload);
  if (!socket.writableCorked) {
    socket.cork();
    process.nextTick(() => socket.uncork());
  }
  socket.write(header);
  socket.write(body);
}

/** Idle time before the kernel probes a peer connection (TCP keepalive). */
const KEEPALIVE_MS = 10_000;
/**
 * Limits of the peer port: a connection that has not said hello may send one small frame, within a few
 * seconds, and only so many may wait at once; any connection silent for long is closed. One hostile
 * connection thus holds a few KB of this node's memory, and a flood of idle ones goes away on its own.
 */
const DEFAULT_LIMITS = {
  handshakeTimeoutMs: 5000,
  idleTimeoutMs: 10 * 60_000,
  maxConnections: 1024,
  maxHandshakes: 64,
};

/** An outbound connection to one peer, multiplexing requests by id. */
class PeerConnection {
  readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: Error | undefined;
  /** Frames that arrived from the peer: a request that times out with none since it went out had no answer. */
  private framesIn = 0;

  constructor(
    readonly peer: string,
    /** The peer's transport address this connection went to. */
    readonly address: string,
    readonly socket: Socket,
    readonly ready: Promise<void>,
  ) {}

  request(body: unknown, timeoutMs: number): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    // A count, not a clock: a frame that came in the millisecond the request went out is no answer to it.
    const framesBefore = this.framesIn;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestTimeoutError(this.peer, timeoutMs));
        // Nothing at all came back since: the connection is dead or half-open (a peer that moved, a
        // host that vanished), not merely slow. Close it, so the next request connects afresh.
        if (this.framesIn === framesBefore) this.socket.destroy(new Error(`no answer for ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      send(this.socket, FrameKind.Request, id, body);
    });
  }

  onFrame(frame: Frame): void {
    this.framesIn++;
    const p = this.pending.get(frame.id);
    if (!p) return; // already timed out
    this.pending.delete(frame.id);
    clearTimeout(p.timer);
    if (frame.kind === FrameKind.Reply) p.resolve(frame.payload);
    else {
      const e = frame.payload as { code?: string; message?: string; details?: Record<string, unknown> };
      p.reject(new RemoteError(this.peer, e.code ?? 'internal', e.message ?? 'remote error', e.details));
    }
  }

  fail(err: Error): void {
    this.closedError ??= err;
    // These were sent: the peer may have them (in its socket buffer, or applied before it crashed).
    const sent = new PeerUnavailableError(this.peer, `${err.message} (after the request was sent)`, true);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(sent);
    }
    this.pending.clear();
  }
}

export class TcpTransport implements Transport {
  private server: Server | undefined;
  private readonly outbound = new Map<string, PeerConnection>();
  private readonly inbound = new Set<Socket>();
  /** Inbound connections that have not said hello yet. */
  private handshakes = 0;
  private readonly limits: typeof DEFAULT_LIMITS;
  /** Requests from peers being handled; close waits for them so their replies go out. */
  private readonly handling = new InFlight();
  /**
   * After repeated failed connects, requests fail fast until `at` instead of reconnecting per request.
   * The first failure sets no wait: a peer that is just starting must not look dead for a while.
   */
  private readonly retryAt = new Map<string, { at: number; failures: number; error: Error }>();
  private closed = false;

  constructor(private readonly opts: TcpTransportOptions) {
    this.limits = {
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_LIMITS.handshakeTimeoutMs,
      idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_LIMITS.idleTimeoutMs,
      maxConnections: opts.maxConnections ?? DEFAULT_LIMITS.maxConnections,
      maxHandshakes: opts.maxHandshakes ?? DEFAULT_LIMITS.maxHandshakes,
    };
  }

  /** The port the server listens on (useful with port 0). */
  get port(): number {
    const addr = this.server?.address();
    return typeof addr === 'object' && addr ? addr.port : this.opts.port;
  }

  listen(handler: RequestHandler): Promise<void> {
    const tls = this.opts.tls;
    const server = tls
      ? createTlsServer(
          {
            ...tls.options,
            requestCert: true,
            rejectUnauthorized: true,
            handshakeTimeout: this.limits.handshakeTimeoutMs,
          },
          (socket) => this.accept(socket, handler, certificateIdentity(socket)),
        )
      : createServer((socket) => this.accept(socket, handler));
    if (tls) {
      tls.onReload = () => (server as ReturnType<typeof createTlsServer>).setSecureContext(tls.options);
      server.on('tlsClientError', (err) => this.opts.onError?.(err, 'peer TLS handshake'));
    }
    server.maxConnections = this.limits.maxConnections;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** identity: the node id the peer's verified certificate names (TLS), or undefined (plain TCP). */
  private accept(socket: Socket, handler: RequestHandler, identity?: string): void {
    if (this.handshakes >= this.limits.maxHandshakes) {
      socket.destroy();
      return;
    }
    this.handshakes++;
    let greeted = false;
    const greet = () => {
      if (greeted) return;
      greeted = true;
      this.handshakes--;
      clearTimeout(handshakeTimer);
    };
    const handshakeTimer = setTimeout(() => socket.destroy(), this.limits.handshakeTimeoutMs);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy());
    this.inbound.add(socket);
    socket.on('close', () => {
      greet();
      this.inbound.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    const decoder = new FrameDecoder(MAX_HELLO_FRAME_BYTES);
    let from: string | undefined;
    socket.on('data', (chunk) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        this.opts.onError?.(err as Error, 'inbound frame');
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        if (frame.kind === FrameKind.Hello) {
          const hello = frame.payload as HelloPayload;
          if (hello?.cluster !== this.opts.cluster) {
            // Says only what the peer sent: a refused hello does not disclose this cluster's name.
            send(socket, FrameKind.ErrorReply, frame.id, {
              code: 'cluster_mismatch',
              message: `this node is not a member of cluster "${String(hello?.cluster).slice(0, 64)}"`,
            });
            socket.end();
            return;
          }
          const version = hello.protocol ?? 1;
          if (typeof version !== 'number' || version < MIN_PROTOCOL_VERSION) {
            send(socket, FrameKind.ErrorReply, frame.id, {
              code: 'protocol_mismatch',
              message: `peer protocol ${String(version).slice(0, 16)} is older than ${MIN_PROTOCOL_VERSION}, the oldest this node speaks`,
            });
            socket.end();
            return;
          }
          if (this.opts.tls && hello.node !== identity) {
            send(socket, FrameKind.ErrorReply, frame.id, {
              code: 'identity_mismatch',
              message: 'the hello names another node than the peer certificate',
            });
            socket.end();
            return;
          }
          from = String(hello.node);
          greet();
          decoder.maxFrameBytes = MAX_FRAME_BYTES;
          // The peer just reached us, so it is back: stop failing our requests to it fast.
          this.retryAt.delete(from);
          send(socket, FrameKind.HelloOk, frame.id, { node: this.opts.self, protocol: PROTOCOL_VERSION });
        } else if (frame.kind === FrameKind.Request) {
          if (from === undefined) {
            socket.destroy();
            return;
          }
          const peer = from;
          this.handling.begin();
          handler(peer, frame.payload).then(
            (reply) => {
              this.handling.end();
              if (!socket.destroyed) send(socket, FrameKind.Reply, frame.id, reply ?? null);
            },
            (err: Error) => {
              this.handling.end();
              const code = err instanceof DynamoError ? err.code : 'internal';
              if (!(err instanceof DynamoError)) this.opts.onError?.(err, `handling request from ${peer}`);
              // A fault of this node's is logged here; its text is not sent to the peer.
              const message = err instanceof DynamoError ? err.message : 'internal error; see the node log';
              if (!socket.destroyed) send(socket, FrameKind.ErrorReply, frame.id, { code, message });
            },
          );
        }
      }
    });
  }

  request(peer: string, body: unknown, timeoutMs: number): Promise<unknown> {
    if (this.closed) return Promise.reject(new PeerUnavailableError(peer, 'transport closed'));
    let existing = this.outbound.get(peer);
    // A connection closed for silence, or to an address the peer no longer advertises (a pod
    // rescheduled onto a new IP), is replaced at once rather than used until its close event.
    if (existing && (existing.socket.destroyed || existing.address !== this.opts.resolve(peer))) {
      this.outbound.delete(peer);
      existing.socket.destroy(new Error('the peer moved to another address'));
      existing = undefined;
    }
    const conn = existing ?? this.connect(peer);
    if (conn instanceof Error) return Promise.reject(conn);
    return conn.ready.then(() => conn.request(body, timeoutMs));
  }

  private connect(peer: string): PeerConnection | Error {
    const backoff = this.retryAt.get(peer);
    if (backoff && Date.now() < backoff.at) return backoff.error;
    const address = this.opts.resolve(peer);
    if (!address) return new PeerUnavailableError(peer, 'unknown peer');
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(colon + 1));
    const tls = this.opts.tls;
    // With TLS, the server must prove to be the peer asked for (a seed: any member of the cluster).
    const expected = peer.startsWith('seed:') ? undefined : peer;
    const socket: Socket = tls
      ? tlsConnect({
          host,
          port,
          secureContext: tls.secureContext(),
          checkServerIdentity: (_host, cert) =>
            expected === undefined || cert.subject?.CN === expected
              ? undefined
              : new Error(`the certificate at ${address} names ${cert.subject?.CN}, not ${expected}`),
        })
      : createConnection({ host, port });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy(new Error('idle')));
    let markReady!: () => void;
    let markFailed!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => {
      markReady = res;
      markFailed = rej;
    });
    ready.catch(() => undefined);
    const conn = new PeerConnection(peer, address, socket, ready);
    this.outbound.set(peer, conn);
    const connectTimer = setTimeout(
      () => socket.destroy(new Error(`connect timeout to ${address}`)),
      this.opts.connectTimeoutMs ?? 2000,
    );
    let opened = false;
    const decoder = new FrameDecoder();
    socket.on('data', (chunk) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        socket.destroy(err as Error);
        return;
      }
      for (const frame of frames) {
        if (frame.id === 0 && frame.kind === FrameKind.HelloOk) {
          opened = true;
          clearTimeout(connectTimer);
          this.retryAt.delete(peer);
          markReady();
        } else if (frame.id === 0 && frame.kind === FrameKind.ErrorReply) {
          const e = frame.payload as { message?: string };
          socket.destroy(new Error(e.message ?? 'handshake refused'));
        } else conn.onFrame(frame);
      }
    });
    socket.on('error', () => undefined); // 'close' follows with the outcome
    socket.on('close', () => {
      clearTimeout(connectTimer);
      if (this.outbound.get(peer) === conn) this.outbound.delete(peer);
      const reason = (socket.errored as Error | null)?.message ?? 'connection closed';
      const err = new PeerUnavailableError(peer, reason);
      if (!opened) {
        const failures = (backoff?.failures ?? 0) + 1;
        const waitMs = failures < 2 ? 0 : Math.min(25 * 2 ** failures, 1000);
        this.retryAt.set(peer, { at: Date.now() + waitMs, failures, error: err });
      }
      markFailed(err);
      conn.fail(err);
    });
    send(socket, FrameKind.Hello, 0, {
      cluster: this.opts.cluster,
      node: this.opts.self,
      protocol: PROTOCOL_VERSION,
    } satisfies HelloPayload);
    return conn;
  }

  /**
   * Stops accepting connections, lets the requests peers already sent finish and answers them (up to
   * graceMs), then closes every connection.
   */
  async close(graceMs = 2000): Promise<void> {
    this.closed = true;
    this.opts.tls?.close();
    const server = this.server;
    const stopped = server && new Promise<void>((resolve) => server.close(() => resolve()));
    for (const conn of this.outbound.values()) conn.socket.destroy();
    this.outbound.clear();
    await this.handling.drained(graceMs);
    // end, not destroy: the replies just written must still reach the peers.
    for (const socket of this.inbound) {
      socket.end();
      setTimeout(() => socket.destroy(), 500).unref();
    }
    await stopped;
  }
}
