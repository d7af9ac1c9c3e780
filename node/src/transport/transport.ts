/**
 * How a node talks to its peers. The coordinator and replicas only see this interface;
 * tcp.ts is the real one, memory.ts the in-memory one for unit tests.
 */

/** Handles one request from peer `from`; its result is the reply, a thrown error becomes a RemoteError at the caller. */
export type RequestHandler = (from: string, body: unknown) => Promise<unknown>;

export interface Transport {
  /**
   * Sends one request to a peer (by node id) and resolves with its reply.
   * Requests to one peer share one persistent connection and may complete out of order.
   * Rejects with PeerUnavailableError when the peer cannot be reached or the connection drops
   * before the reply, RequestTimeoutError after timeoutMs, RemoteError when the peer's handler threw.
   */
  request(peer: string, body: unknown, timeoutMs: number): Promise<unknown>;
  /** Starts accepting requests from peers. */
  listen(handler: RequestHandler): Promise<void>;
  /** Stops accepting, fails pending requests, closes connections. */
  close(): Promise<void>;
}
