// DynamoCluster spec defaults and the checks the CRD schema cannot make (or that the operator repeats, because a
// CRD installed by hand may be older than this operator). Pure: no I/O.
import type { DynamoClusterSpec, DynamoClusterSpecInput } from './api-types.js';

/** Defaults, the same as the CRD schema's. */
export const DEFAULTS: DynamoClusterSpec = {
  nodes: 3,
  image: 'dynamo-kv:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  tokensPerNode: 256,
  replication: { n: 3, r: 2, w: 2 },
  seeds: 3,
  storage: { size: '10Gi', retainOnScaleDown: false },
  resources: {},
  rackTopologyKey: 'topology.kubernetes.io/zone',
  hintedHandoff: { windowSeconds: 10_800 },
  antiEntropy: { intervalSeconds: 30 },
  podTemplate: {},
  tls: { mode: 'operator' },
  auth: { enabled: true },
};

export const TLS_MODES = ['operator', 'cert-manager', 'disabled'] as const;
/**
 * Most nodes a cluster with TLS may have: every node's certificate and key (about 3.3 KB, up to ~4.5 KB with long
 * names) are in one Secret (objects/tls.ts says why), and a Secret holds at most 1 MiB.
 */
export const MAX_TLS_NODES = 200;

/** Highest replication factor a node accepts for a bucket. */
export const MAX_N = 16;
/** A node's tombstone grace period (10 days): hints may not outlive it. */
export const MAX_HINT_WINDOW_SECONDS = 864_000;
/** Tokens over all nodes: the token ConfigMap must stay under the API server's 1 MiB limit (33 bytes a token). */
export const MAX_TOTAL_TOKENS = 28_000;

/** The spec with every omitted field set to its default. */
export function withDefaults(input: DynamoClusterSpecInput | undefined): DynamoClusterSpec {
  const spec = input ?? {};
  const replication = { ...DEFAULTS.replication, ...spec.replication };
  return {
    nodes: spec.nodes ?? DEFAULTS.nodes,
    image: spec.image ?? DEFAULTS.image,
    imagePullPolicy: spec.imagePullPolicy ?? DEFAULTS.imagePullPolicy,
    tokensPerNode: spec.tokensPerNode ?? DEFAULTS.tokensPerNode,
    replication,
    seeds: spec.seeds ?? DEFAULTS.seeds,
    storage: { ...DEFAULTS.storage, ...spec.storage },
    resources: spec.resources ?? DEFAULTS.resources,
    rackTopologyKey: spec.rackTopologyKey ?? DEFAULTS.rackTopologyKey,
    hintedHandoff: { ...DEFAULTS.hintedHandoff, ...spec.hintedHandoff },
    antiEntropy: { ...DEFAULTS.antiEntropy, ...spec.antiEntropy },
    podTemplate: spec.podTemplate ?? DEFAULTS.podTemplate,
    tls: {
      mode: spec.tls?.mode ?? DEFAULTS.tls.mode,
      ...(spec.tls?.issuerRef ? { issuerRef: spec.tls.issuerRef } : {}),
    },
    auth: { enabled: spec.auth?.enabled ?? DEFAULTS.auth.enabled },
  };
}

const QUANTITY = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;
const FACTORS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Bytes in a Kubernetes storage quantity ("10Gi", "500M", "1e9" is not accepted); undefined when malformed. */
export function parseQuantity(quantity: string): number | undefined {
  const match = QUANTITY.exec(quantity.trim());
  if (match === null) return undefined;
  return Number(match[1]) * (FACTORS[match[2] ?? ''] ?? 1);
}

function isInt(value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** Problems with a defaulted spec, each a sentence for the Valid condition; empty when the spec is usable. */
export function validateSpec(spec: DynamoClusterSpec): string[] {
  const problems: string[] = [];
  const { n, r, w } = spec.replication;
  if (!isInt(spec.nodes, 1)) problems.push(`spec.nodes must be an integer >= 1, got ${spec.nodes}`);
  if (!isInt(n, 1, MAX_N))
    problems.push(`spec.replication.n must be an integer from 1 to ${MAX_N}, got ${n}`);
  if (!isInt(r, 1) || r > n) problems.push(`spec.replication.r must be from 1 to n (${n}), got ${r}`);
  if (!isInt(w, 1) || w > n) problems.push(`spec.replication.w must be from 1 to n (${n}), got ${w}`);
  if (isInt(spec.nodes, 1) && isInt(n, 1) && spec.nodes < n) {
    problems.push(`spec.nodes (${spec.nodes}) must be at least spec.replication.n (${n})`);
  }
  if (!isInt(spec.seeds, 1)) problems.push(`spec.seeds must be an integer >= 1, got ${spec.seeds}`);
  if (!isInt(spec.tokensPerNode, 1, 4096)) {
    problems.push(`spec.tokensPerNode must be an integer from 1 to 4096, got ${spec.tokensPerNode}`);
  } else if (isInt(spec.nodes, 1) && spec.nodes * spec.tokensPerNode > MAX_TOTAL_TOKENS) {
    problems.push(
      `spec.nodes x spec.tokensPerNode (${spec.nodes} x ${spec.tokensPerNode}) must be at most ${MAX_TOTAL_TOKENS} (the token ConfigMap must stay under 1 MiB)`,
    );
  }
  const bytes = parseQuantity(spec.storage.size);
  if (bytes === undefined || bytes <= 0) {
    problems.push(`spec.storage.size must be a positive quantity such as 10Gi, got '${spec.storage.size}'`);
  }
  if (spec.image.trim() === '') problems.push('spec.image must not be empty');
  if (!isInt(spec.hintedHandoff.windowSeconds, 1, MAX_HINT_WINDOW_SECONDS)) {
    problems.push(
      `spec.hintedHandoff.windowSeconds must be from 1 to ${MAX_HINT_WINDOW_SECONDS} (the tombstone grace period), got ${spec.hintedHandoff.windowSeconds}`,
    );
  }
  if (!isInt(spec.antiEntropy.intervalSeconds, 1)) {
    problems.push(
      `spec.antiEntropy.intervalSeconds must be an integer >= 1, got ${spec.antiEntropy.intervalSeconds}`,
    );
  }
  const tls = spec.tls;
  if (!(TLS_MODES as readonly string[]).includes(tls.mode)) {
    problems.push(`spec.tls.mode must be one of ${TLS_MODES.join(', ')}, got '${tls.mode}'`);
  } else if (tls.mode === 'cert-manager' && !tls.issuerRef?.name) {
    problems.push(
      "spec.tls.issuerRef.name must name a cert-manager issuer when spec.tls.mode is 'cert-manager'",
    );
  }
  const issuerKind = tls.issuerRef?.kind;
  if (issuerKind !== undefined && issuerKind !== 'Issuer' && issuerKind !== 'ClusterIssuer') {
    problems.push(`spec.tls.issuerRef.kind must be Issuer or ClusterIssuer, got '${issuerKind}'`);
  }
  if (tls.mode !== 'disabled' && isInt(spec.nodes, 1) && spec.nodes > MAX_TLS_NODES) {
    problems.push(
      `spec.nodes must be at most ${MAX_TLS_NODES} with TLS (every node's certificate is in one Secret of at most 1 MiB), got ${spec.nodes}`,
    );
  }
  if (typeof spec.auth.enabled !== 'boolean') {
    problems.push(`spec.auth.enabled must be true or false, got ${String(spec.auth.enabled)}`);
  }
  return problems;
}
