// NetworkPolicy: the peer port of a cluster's nodes admits only that cluster's own pods; the HTTP port
// (clients, probes, the operator's admin calls) stays reachable.
import type { V1NetworkPolicy } from '@kubernetes/client-node';
import { type DynamoCluster, HTTP_PORT, PEER_PORT } from '../api-types.js';
import { networkPolicyName, selectorLabels } from '../names.js';
import { ownedMeta } from './meta.js';

export function buildNetworkPolicy(cluster: DynamoCluster): V1NetworkPolicy {
  const selector = { matchLabels: selectorLabels(cluster.metadata.name) };
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: ownedMeta(cluster, networkPolicyName(cluster.metadata.name)),
    spec: {
      podSelector: selector,
      policyTypes: ['Ingress'],
      ingress: [
        // _from: the client library's name for the "from" field (its serializer maps it).
        { _from: [{ podSelector: selector }], ports: [{ protocol: 'TCP', port: PEER_PORT }] },
        { ports: [{ protocol: 'TCP', port: HTTP_PORT }] },
      ],
    },
  };
}
