/** Admin views and actions of the node: the ring as this node sees it, its lifecycle and streams. */
import { InvalidRequestError } from '../errors.js';
import type { NodeContext } from './node-context.js';

/** Members with state, HTTP URL, token count (or tokens), and their share of the ring as primary and as replica. */
export async function ringView(ctx: NodeContext, withTokens: boolean) {
  if (ctx.membership.members().some((m) => !m.http)) await ctx.learnPeers();
  const ring = ctx.membership.ring();
  const n = ctx.config.defaultN;
  const primary = ring.ownership(1);
  const replica = ring.ownership(n);
  return {
    cluster: ctx.membership.cluster,
    self: ctx.membership.self,
    n,
    members: ctx.membership.members().map((m) => ({
      id: m.id,
      address: m.address,
      http: m.http ?? null,
      rack: m.rack ?? null,
      state: ctx.membership.state(m.id),
      tokenCount: m.tokens.length,
      ownership: primary.get(m.id) ?? 0,
      replicaOwnership: replica.get(m.id) ?? 0,
      ...(withTokens ? { tokens: m.tokens } : {}),
    })),
  };
}

/** This node's lifecycle state (joining, up, leaving, left) and its join or decommission progress. */
export function nodeStatus(ctx: NodeContext) {
  return {
    id: ctx.membership.self,
    cluster: ctx.membership.cluster,
    state: ctx.streamer?.state ?? (ctx.rebuild && !ctx.rebuild.serving ? 'rebuilding' : 'up'),
    stream: ctx.streamer?.status() ?? null,
    rebuild: ctx.rebuild?.status() ?? null,
    widening: ctx.widening.status(),
    cleanup: ctx.cleanup.status(),
  };
}

/** Starts a cleanup run (409 cleanup_blocked while a move is under way or hints are held). */
export function startCleanup(ctx: NodeContext) {
  ctx.cleanup.start().catch(() => undefined);
  return nodeStatus(ctx);
}

/** Starts this node's decommission (idempotent) and returns its status. */
export function decommission(ctx: NodeContext, force: boolean) {
  if (!ctx.streamer) {
    throw new InvalidRequestError(
      'static_membership',
      'this node uses static membership (--members): restart the others without it instead',
    );
  }
  ctx.streamer.decommission(force);
  return nodeStatus(ctx);
}
