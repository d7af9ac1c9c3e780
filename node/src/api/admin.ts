/** Admin views of the node: the ring as this node sees it. */
import type { NodeContext } from './node-context.js';

/** Members with state, token count (or tokens), and their share of the ring as primary and as replica. */
export function ringView(ctx: NodeContext, withTokens: boolean) {
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
      rack: m.rack ?? null,
      state: ctx.membership.state(m.id),
      tokenCount: m.tokens.length,
      ownership: primary.get(m.id) ?? 0,
      replicaOwnership: replica.get(m.id) ?? 0,
      ...(withTokens ? { tokens: m.tokens } : {}),
    })),
  };
}
