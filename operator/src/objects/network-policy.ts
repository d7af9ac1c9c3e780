// NetworkPolicy: the peer port of a cluster's nodes admits only that cluster's own pods. The HTTP port (clients,
// Prometheus, the operator's admin calls) is open unless spec.network.clientFrom says who may reach it; then it
// admits those peers, the cluster's own pods and the operator's pods. Kubelet probes are not subject to it.
import type {
  V1IPBlock,
  V1LabelSelector,
  V1NetworkPolicy,
  V1NetworkPolicyPeer,
} from '@kubernetes/client-node';
import {
  type DynamoCluster,
  type DynamoClusterSpec,
  HTTP_PORT,
  type IpBlock,
  type LabelSelector,
  type NetworkPeer,
  PEER_PORT,
} from '../api-types.js';
import { LABEL_COMPONENT, networkPolicyName, selectorLabels } from '../names.js';
import { ownedMeta } from './meta.js';

/** The label every operator pod carries (the chart's operator selector labels). */
export const OPERATOR_POD_LABELS: Record<string, string> = { [LABEL_COMPONENT]: 'operator' };
/** The label the API server puts on every namespace, with the namespace's name as its value. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export interface NetworkPolicyOptions {
  /** The namespace the operator's pods run in (default: the cluster's own namespace). */
  operatorNamespace?: string;
}

export function buildNetworkPolicy(
  cluster: DynamoCluster,
  spec: DynamoClusterSpec,
  options: NetworkPolicyOptions = {},
): V1NetworkPolicy {
  const own: V1NetworkPolicyPeer = { podSelector: { matchLabels: selectorLabels(cluster.metadata.name) } };
  const httpPort = { ports: [{ protocol: 'TCP', port: HTTP_PORT }] };
  const clientFrom = spec.network.clientFrom;
  const http =
    clientFrom === undefined
      ? httpPort
      : {
          _from: [
            own,
            operatorPeer(options.operatorNamespace ?? cluster.metadata.namespace),
            ...clientFrom.map(peer),
          ],
          ...httpPort,
        };
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: ownedMeta(cluster, networkPolicyName(cluster.metadata.name)),
    spec: {
      podSelector: own.podSelector as V1LabelSelector,
      policyTypes: ['Ingress'],
      ingress: [
        // _from: the client library's name for the "from" field (its serializer maps it).
        { _from: [own], ports: [{ protocol: 'TCP', port: PEER_PORT }] },
        http,
      ],
    },
  };
}

/** The operator's pods, which call the nodes' admin API (ring, status, decommission, metrics). */
function operatorPeer(namespace: string): V1NetworkPolicyPeer {
  return {
    namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: namespace } },
    podSelector: { matchLabels: { ...OPERATOR_POD_LABELS } },
  };
}

/** A user's peer, copied field by field (nothing the spec does not name reaches the policy). */
function peer(from: NetworkPeer): V1NetworkPolicyPeer {
  const out: V1NetworkPolicyPeer = {};
  if (from.namespaceSelector !== undefined) out.namespaceSelector = selector(from.namespaceSelector);
  if (from.podSelector !== undefined) out.podSelector = selector(from.podSelector);
  if (from.ipBlock !== undefined) out.ipBlock = ipBlock(from.ipBlock);
  return out;
}

function selector(from: LabelSelector): V1LabelSelector {
  const out: V1LabelSelector = {};
  if (from.matchLabels !== undefined) out.matchLabels = { ...from.matchLabels };
  if (from.matchExpressions !== undefined) {
    out.matchExpressions = from.matchExpressions.map((e) => ({
      key: e.key,
      operator: e.operator,
      ...(e.values !== undefined ? { values: [...e.values] } : {}),
    }));
  }
  return out;
}

function ipBlock(from: IpBlock): V1IPBlock {
  return { cidr: from.cidr, ...(from.except !== undefined ? { except: [...from.except] } : {}) };
}
