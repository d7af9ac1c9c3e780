// The token ConfigMap's content: node name -> that node's tokens, the durable record of who owns what on the ring.
// Entries are only ever added (for a node about to start) or removed (after a node has left); never changed.
import { allocateTokens } from '../../node/src/ring/allocation.js';

/** Node (pod) name -> its tokens, 32-hex each. */
export type TokenAssignments = Map<string, string[]>;

/**
 * The ConfigMap key naming the node that founds a new cluster (its nodes start with --bootstrap when it
 * names them). Written with the first tokens of a new cluster, removed once a node is ready: a pod that
 * later restarts on an empty volume rejoins the cluster instead of founding a second one. Not a pod name
 * (pod names never start with an underscore).
 */
export const FOUNDER_KEY = '_founder';

/** ConfigMap data ({ "<pod>": "tok,tok,..." }) to assignments; keys that are not pods of the cluster are kept too. */
export function parseAssignments(data: Record<string, string> | undefined): TokenAssignments {
  const out: TokenAssignments = new Map();
  for (const [node, value] of Object.entries(data ?? {})) {
    if (node === FOUNDER_KEY) continue;
    const tokens = value
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    if (tokens.length > 0) out.set(node, tokens);
  }
  return out;
}

/** Assignments to ConfigMap data, keys sorted so the same assignments always serialise the same way. */
export function serializeAssignments(assignments: TokenAssignments): Record<string, string> {
  const data: Record<string, string> = {};
  for (const node of [...assignments.keys()].sort()) data[node] = (assignments.get(node) ?? []).join(',');
  return data;
}

/**
 * Assignments extended with tokens for each of `nodes` that has none, allocated in the order given (each new
 * node balances against all before it). Existing entries are returned untouched; the input is not modified.
 */
export function assignTokens(
  assignments: TokenAssignments,
  nodes: readonly string[],
  tokensPerNode: number,
  n: number,
): TokenAssignments {
  const out: TokenAssignments = new Map(assignments);
  for (const node of nodes) {
    if (out.has(node)) continue;
    const existing = [...out].map(([id, tokens]) => ({ id, tokens }));
    out.set(node, allocateTokens({ existing, newNode: node, tokens: tokensPerNode, n }));
  }
  return out;
}
