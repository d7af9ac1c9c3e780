// The two Services of a cluster: a headless one giving every pod a stable DNS name for peers (ready or not), and
// a client one load-balancing the HTTP API over ready nodes.
import type { V1Service } from '@kubernetes/client-node';
import { type DynamoCluster, HTTP_PORT, PEER_PORT } from '../api-types.js';
import { clientServiceName, peerServiceName, selectorLabels } from '../names.js';
import { ownedMeta } from './meta.js';

/** Headless Service behind the pods' DNS names; publishes not-ready pods so joining nodes can be reached. */
export function buildPeerService(cluster: DynamoCluster): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(cluster, peerServiceName(cluster.metadata.name)),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: selectorLabels(cluster.metadata.name),
      ports: [
        { name: 'peer', port: PEER_PORT, targetPort: 'peer', protocol: 'TCP' },
        { name: 'http', port: HTTP_PORT, targetPort: 'http', protocol: 'TCP' },
      ],
    },
  };
}

/** ClusterIP Service for clients: the HTTP API of ready nodes. */
export function buildClientService(cluster: DynamoCluster): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(cluster, clientServiceName(cluster.metadata.name)),
    spec: {
      type: 'ClusterIP',
      selector: selectorLabels(cluster.metadata.name),
      ports: [{ name: 'http', port: HTTP_PORT, targetPort: 'http', protocol: 'TCP' }],
    },
  };
}
