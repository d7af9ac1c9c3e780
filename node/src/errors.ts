/**
 * Typed errors of the node. Each carries the HTTP status and error code it becomes;
 * the HTTP layer turns them into JSON responses in one place (api/respond.ts).
 */

export abstract class DynamoError extends Error {
  abstract readonly status: number;
  abstract readonly code: string;
  /** Extra JSON fields for the error body (e.g. needed/got). */
  details(): Record<string, unknown> {
    return {};
  }
}

/** Bad input from a client: key, bucket, query parameter, props, body. */
export class InvalidRequestError extends DynamoError {
  readonly status = 400;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/**
 * A gossip node whose data directory holds tokens other than those --initial-tokens assigns it: the
 * directory is another ring's (a cluster re-created with the same name meeting an old volume), and
 * serving on it would put the node where the cluster does not expect it.
 */
export class TokenMismatchError extends InvalidRequestError {
  constructor(node: string, dataDir: string, held: number, assigned: number, foreign: number) {
    super(
      'token_mismatch',
      `node ${node}'s data directory (${dataDir}) holds the ${held} tokens it claimed before, but --initial-tokens assigns it ${assigned} tokens, ${foreign} of them not among those: the directory belongs to another ring (a cluster re-created with the same name meeting an old volume?). Refusing to serve on it: empty the data directory (its data is lost) or give the node the tokens it holds`,
    );
    this.name = 'TokenMismatchError';
  }
}

/** A request without valid credentials, where the node requires them. */
export class UnauthenticatedError extends DynamoError {
  readonly status = 401;
  readonly code = 'unauthenticated';
  constructor(message = 'send Authorization: Bearer <token>') {
    super(message);
    this.name = 'UnauthenticatedError';
  }
}

/** Valid credentials whose role does not allow the request. */
export class ForbiddenError extends DynamoError {
  readonly status = 403;
  readonly code = 'forbidden';
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenError';
  }
}

/** An admin call on the client port of a node that serves them on a separate admin listener. */
export class AdminListenerError extends DynamoError {
  readonly status = 403;
  readonly code = 'admin_listener';
  constructor() {
    super("admin calls are served on this node's admin listener (--admin-port), not on the client port");
    this.name = 'AdminListenerError';
  }
}

/** An admin action the cluster's current state does not allow (another move under way, too few members). */
export class ConflictError extends DynamoError {
  readonly status = 409;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConflictError';
  }
}

/** A context that does not decode or fails its integrity check. */
export class InvalidContextError extends InvalidRequestError {
  constructor(message: string) {
    super('invalid_context', message);
    this.name = 'InvalidContextError';
  }
}

/** The client went away before its request was read: nothing to answer, and no server fault. */
export class ClientAbortedError extends DynamoError {
  readonly status = 499;
  readonly code = 'client_aborted';
  constructor() {
    super('the client closed the connection before sending the whole request');
    this.name = 'ClientAbortedError';
  }
}

export class ValueTooLargeError extends DynamoError {
  readonly status = 413;
  readonly code = 'value_too_large';
  constructor(readonly limit: number) {
    super(`value exceeds the limit of ${limit} bytes`);
    this.name = 'ValueTooLargeError';
  }
  override details() {
    return { limit: this.limit };
  }
}

export class NotFoundError extends DynamoError {
  readonly status = 404;
  readonly code = 'not_found';
  /** @param context of a deleted or expired key: a write with it supersedes the tombstone. */
  constructor(
    message = 'not found',
    readonly context?: string,
  ) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/**
 * A client write would leave more concurrent siblings than the configured limit; nothing was written.
 * The client should read (getting the siblings and their context), resolve them, and write with that context.
 */
export class TooManySiblingsError extends DynamoError {
  readonly status = 409;
  readonly code = 'too_many_siblings';
  constructor(
    readonly siblings: number,
    readonly limit: number,
  ) {
    super(
      `this write would leave ${siblings} concurrent siblings (limit ${limit}); read the key, resolve its siblings and write with the read's context`,
    );
    this.name = 'TooManySiblingsError';
  }
  override details() {
    return { siblings: this.siblings, limit: this.limit };
  }
}

/** Fewer replicas answered than the request's r or w asked for. */
export class QuorumNotMetError extends DynamoError {
  readonly status = 503;
  readonly code = 'quorum_not_met';
  constructor(
    readonly op: string,
    readonly needed: number,
    readonly got: number,
    readonly reasons: string[] = [],
  ) {
    super(`${op}: needed ${needed} replica replies, got ${got}`);
    this.name = 'QuorumNotMetError';
  }
  override details() {
    return { needed: this.needed, got: this.got };
  }
}

/** Transport: the peer cannot be reached or the connection dropped before it answered. */
export class PeerUnavailableError extends Error {
  constructor(
    readonly peer: string,
    message: string,
    /**
     * True when the request was sent before the connection failed: the peer may still apply it (a
     * paused process reads it on resume). False: it never left this node.
     */
    readonly mayHaveArrived = false,
  ) {
    super(`${peer}: ${message}`);
    this.name = 'PeerUnavailableError';
  }
}

/** Whether err leaves it unknown if the peer applied the request (it may apply it later still). */
export const outcomeUnknown = (err: unknown): boolean =>
  err instanceof RequestTimeoutError || (err instanceof PeerUnavailableError && err.mayHaveArrived);

/** Transport: the peer did not answer within the request's timeout. */
export class RequestTimeoutError extends Error {
  constructor(
    readonly peer: string,
    readonly timeoutMs: number,
  ) {
    super(`${peer}: no reply within ${timeoutMs} ms`);
    this.name = 'RequestTimeoutError';
  }
}

/** Transport: the peer handled the request and answered with an error. */
export class RemoteError extends Error {
  constructor(
    readonly peer: string,
    readonly code: string,
    message: string,
    /** The remote DynamoError's extra fields, when it was one. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(`${peer}: ${code}: ${message}`);
    this.name = 'RemoteError';
  }
}

/** The node has not yet heard from its cluster since it started: it serves no client request. */
export class NotReadyError extends DynamoError {
  readonly status = 503;
  readonly code = 'not_ready';
  constructor(message = 'this node does not serve yet; try another node') {
    super(message);
    this.name = 'NotReadyError';
  }
}

/** Client: an answer the client has no more specific error for (e.g. 500 from a node). */
export class DynamoHttpError extends DynamoError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'DynamoHttpError';
  }
}

/** Client: update() read concurrent siblings and was given no resolve function; nothing was written. */
export class UnresolvedSiblingsError extends Error {
  constructor(
    readonly siblings: ReadonlyArray<{ value: Buffer; contentType: string }>,
    readonly context: string,
  ) {
    super(`${siblings.length} concurrent siblings and no resolve function: pass { resolve } to update()`);
    this.name = 'UnresolvedSiblingsError';
  }
}

/**
 * A write whose coordinating replica did not answer after it was sent the write: it may store it,
 * now or later, or never. Not retried on another replica (that would store it a second time, under a
 * second dot, beyond the reach of a later delete); the client learns the outcome by reading.
 */
export class WriteOutcomeUnknownError extends DynamoError {
  readonly status = 503;
  readonly code = 'write_outcome_unknown';
  constructor(
    readonly peer: string,
    readonly reasons: string[],
  ) {
    super(
      `replica ${peer} did not answer after it was sent the write; it may or may not be stored: read the key to find out`,
    );
    this.name = 'WriteOutcomeUnknownError';
  }
  override details() {
    return { replica: this.peer };
  }
}
