// Metadata every owned object carries: the cluster's labels and a controller ownerReference to the DynamoCluster.
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { API_VERSION, type DynamoCluster, KIND } from '../api-types.js';
import { commonLabels } from '../names.js';

/** The controller reference that ties an owned object to its cluster (deleted with it by the garbage collector). */
export function ownerReference(cluster: DynamoCluster): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: cluster.metadata.name,
    uid: cluster.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Name, namespace, labels and ownerReference for an object of this cluster. */
export function ownedMeta(cluster: DynamoCluster, name: string): V1ObjectMeta {
  return {
    name,
    namespace: cluster.metadata.namespace,
    labels: commonLabels(cluster.metadata.name),
    ownerReferences: [ownerReference(cluster)],
  };
}
