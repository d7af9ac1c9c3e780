// DynamoCluster spec defaults and the checks the CRD schema cannot make (or that the operator repeats, because a
// CRD installed by hand may be older than this operator). Pure: no I/O.
import { isIPv4, isIPv6 } from 'node:net';
import type {
  DynamoClusterSpec,
  DynamoClusterSpecInput,
  LabelSelector,
  NetworkPeer,
  NetworkSpec,
} from './api-types.js';

/** Defaults, the same as the CRD schema's. */
export const DEFAULTS: DynamoClusterSpec = {
  nodes: 3,
  image: 'dynamo-kv:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  tokensPerNode: 256,
  replication: { n: 3, r: 2, w: 2 },
  seeds: 3,
  storage: { size: '10Gi', retainOnScaleDown: false, volumesOnDelete: 'Retain' },
  resources: {},
  rackTopologyKey: 'topology.kubernetes.io/zone',
  hintedHandoff: { windowSeconds: 10_800 },
  antiEntropy: { intervalSeconds: 30 },
  podTemplate: {},
  tls: { mode: 'operator' },
  auth: { enabled: true },
  network: {},
};

export const TLS_MODES = ['operator', 'cert-manager', 'disabled'] as const;
export const VOLUMES_ON_DELETE = ['Retain', 'Delete'] as const;
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
    // Unset and empty differ: unset leaves the HTTP port open, [] admits only the cluster and the operator.
    network: spec.network?.clientFrom !== undefined ? { clientFrom: spec.network.clientFrom } : {},
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

/** A Kubernetes resource quantity (the API server's own pattern): refused here, not by the StatefulSet apply. */
const RESOURCE_QUANTITY =
  /^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

export function isQuantity(value: unknown): boolean {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0;
  return typeof value === 'string' && RESOURCE_QUANTITY.test(value);
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
  if (!isLabelKey(spec.rackTopologyKey)) {
    problems.push(
      `spec.rackTopologyKey must be a label key such as topology.kubernetes.io/zone, got '${String(spec.rackTopologyKey)}'`,
    );
  }
  const bytes = parseQuantity(spec.storage.size);
  if (bytes === undefined || bytes <= 0) {
    problems.push(`spec.storage.size must be a positive quantity such as 10Gi, got '${spec.storage.size}'`);
  }
  if (!(VOLUMES_ON_DELETE as readonly string[]).includes(spec.storage.volumesOnDelete)) {
    problems.push(
      `spec.storage.volumesOnDelete must be Retain or Delete, got '${String(spec.storage.volumesOnDelete)}'`,
    );
  }
  for (const kind of ['requests', 'limits'] as const) {
    for (const [resource, quantity] of Object.entries(spec.resources?.[kind] ?? {})) {
      if (!isQuantity(quantity)) {
        problems.push(
          `spec.resources.${kind}.${resource} must be a quantity such as 500m or 512Mi, got '${String(quantity)}'`,
        );
      }
    }
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
  problems.push(...validateNetwork(spec.network));
  return problems;
}

// --- spec.network ------------------------------------------------------------------------------------------
// The checks the API server makes of a NetworkPolicy's peers, made first, so that a bad peer is an invalid
// spec (a Valid=False condition naming the field) rather than a NetworkPolicy apply that fails every pass.

const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A label key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters. */
export function isLabelKey(key: unknown): boolean {
  if (typeof key !== 'string') return false;
  const slash = key.lastIndexOf('/');
  const [prefix, name] = slash < 0 ? [undefined, key] : [key.slice(0, slash), key.slice(slash + 1)];
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}

export function isLabelValue(value: unknown): boolean {
  return typeof value === 'string' && value.length <= 63 && LABEL_VALUE.test(value);
}

/** An address as a number and its width in bits; undefined unless a plain IPv4 or IPv6 address. */
export function parseIp(text: string): { bits: 32 | 128; value: bigint } | undefined {
  if (isIPv4(text)) {
    return { bits: 32, value: text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(octet), 0n) };
  }
  if (!isIPv6(text) || text.includes('%')) return undefined;
  let groups = text;
  const lastColon = groups.lastIndexOf(':');
  const tail = groups.slice(lastColon + 1);
  if (tail.includes('.')) {
    // An IPv4 tail (::ffff:10.0.0.1) is the last two groups.
    const v4 = parseIp(tail);
    if (v4 === undefined) return undefined;
    const high = Number(v4.value >> 16n).toString(16);
    const low = Number(v4.value & 0xffffn).toString(16);
    groups = `${groups.slice(0, lastColon + 1)}${high}:${low}`;
  }
  const [head, rest] = groups.split('::') as [string, string | undefined];
  const parts = (s: string) => (s === '' ? [] : s.split(':'));
  const left = parts(head);
  const right = rest === undefined ? [] : parts(rest);
  const zeros = rest === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...Array<string>(zeros).fill('0'), ...right];
  if (all.length !== 8) return undefined;
  return { bits: 128, value: all.reduce((acc, g) => (acc << 16n) | BigInt(`0x${g}`), 0n) };
}

/** A CIDR (address/prefix); `canonical` is false when the address has bits set past the prefix. */
export function parseCidr(
  text: string,
): { bits: 32 | 128; value: bigint; prefix: number; canonical: boolean } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (ip === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > ip.bits) return undefined;
  const hostBits = BigInt(ip.bits - prefix);
  const canonical = (ip.value & ((1n << hostBits) - 1n)) === 0n;
  return { ...ip, prefix, canonical };
}

function validateSelector(selector: unknown, path: string): string[] {
  if (!isObject(selector)) return [`${path} must be a label selector (matchLabels, matchExpressions)`];
  const problems: string[] = [];
  const { matchLabels, matchExpressions } = selector as LabelSelector;
  if (matchLabels !== undefined) {
    if (!isObject(matchLabels)) problems.push(`${path}.matchLabels must be a map of label keys to values`);
    else {
      for (const [key, value] of Object.entries(matchLabels)) {
        if (!isLabelKey(key)) problems.push(`${path}.matchLabels has an invalid label key '${key}'`);
        if (!isLabelValue(value)) {
          problems.push(
            `${path}.matchLabels.${key} must be a label value (at most 63 characters), got '${value}'`,
          );
        }
      }
    }
  }
  if (matchExpressions !== undefined) {
    if (!Array.isArray(matchExpressions)) problems.push(`${path}.matchExpressions must be a list`);
    else {
      matchExpressions.forEach((expression, i) => {
        const at = `${path}.matchExpressions[${i}]`;
        if (!isObject(expression)) {
          problems.push(`${at} must have a key and an operator`);
          return;
        }
        const { key, operator, values } = expression as unknown as Record<string, unknown>;
        if (!isLabelKey(key)) problems.push(`${at}.key must be a label key, got '${String(key)}'`);
        if (!SELECTOR_OPERATORS.includes(operator as string)) {
          problems.push(
            `${at}.operator must be one of ${SELECTOR_OPERATORS.join(', ')}, got '${String(operator)}'`,
          );
          return;
        }
        const list = values === undefined ? [] : values;
        if (!Array.isArray(list)) {
          problems.push(`${at}.values must be a list of label values`);
          return;
        }
        const wantsValues = operator === 'In' || operator === 'NotIn';
        if (wantsValues && list.length === 0) problems.push(`${at}.values must not be empty for ${operator}`);
        if (!wantsValues && list.length > 0) problems.push(`${at}.values must be empty for ${operator}`);
        for (const value of list) {
          if (!isLabelValue(value))
            problems.push(`${at}.values has an invalid label value '${String(value)}'`);
        }
      });
    }
  }
  return problems;
}

function validateIpBlock(block: unknown, path: string): string[] {
  if (!isObject(block) || typeof block.cidr !== 'string')
    return [`${path}.cidr must be a CIDR such as 10.0.0.0/8`];
  const cidr = parseCidr(block.cidr);
  if (cidr === undefined) return [`${path}.cidr must be a CIDR such as 10.0.0.0/8, got '${block.cidr}'`];
  const problems: string[] = [];
  if (!cidr.canonical) {
    problems.push(`${path}.cidr '${block.cidr}' has address bits set past its prefix /${cidr.prefix}`);
  }
  const except = block.except ?? [];
  if (!Array.isArray(except)) return [...problems, `${path}.except must be a list of CIDRs`];
  except.forEach((text: unknown, i) => {
    const at = `${path}.except[${i}]`;
    const inner = typeof text === 'string' ? parseCidr(text) : undefined;
    if (inner === undefined) {
      problems.push(`${at} must be a CIDR such as 10.1.0.0/16, got '${String(text)}'`);
      return;
    }
    const shift = BigInt(cidr.bits - cidr.prefix);
    const within =
      inner.bits === cidr.bits && inner.prefix > cidr.prefix && inner.value >> shift === cidr.value >> shift;
    if (!within) problems.push(`${at} '${text}' must be a smaller range inside cidr '${block.cidr}'`);
  });
  return problems;
}

function validatePeer(peer: unknown, path: string): string[] {
  if (!isObject(peer)) return [`${path} must be an object with namespaceSelector, podSelector or ipBlock`];
  const { namespaceSelector, podSelector, ipBlock } = peer as NetworkPeer;
  const selectors = [namespaceSelector, podSelector].filter((s) => s !== undefined).length;
  if (selectors === 0 && ipBlock === undefined) {
    return [`${path} must set namespaceSelector, podSelector or ipBlock`];
  }
  if (ipBlock !== undefined && selectors > 0) {
    return [`${path} must set either ipBlock or selectors (namespaceSelector, podSelector), not both`];
  }
  const problems: string[] = [];
  if (namespaceSelector !== undefined)
    problems.push(...validateSelector(namespaceSelector, `${path}.namespaceSelector`));
  if (podSelector !== undefined) problems.push(...validateSelector(podSelector, `${path}.podSelector`));
  if (ipBlock !== undefined) problems.push(...validateIpBlock(ipBlock, `${path}.ipBlock`));
  return problems;
}

/** Problems with spec.network (who may reach the HTTP port), each a sentence. */
export function validateNetwork(network: NetworkSpec): string[] {
  const clientFrom = network.clientFrom as unknown;
  if (clientFrom === undefined) return [];
  if (!Array.isArray(clientFrom)) return ['spec.network.clientFrom must be a list of NetworkPolicy peers'];
  return clientFrom.flatMap((peer, i) => validatePeer(peer, `spec.network.clientFrom[${i}]`));
}
