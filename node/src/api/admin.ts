/** Admin views of the node: the ring as this node sees it. */
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
