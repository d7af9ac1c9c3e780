// PodDisruptionBudget: voluntary evictions (node drains) take one node at a time, so quorums of n >= 3 survive.
import type { V1PodDisruptionBudget } from '@kubernetes/client-node';
import type { DynamoCluster } from '../api-types.js';
import { pdbName, selectorLabels } from '../names.js';
import { ownedMeta } from './meta.js';

export function buildPodDisruptionBudget(cluster: DynamoCluster): V1PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: ownedMeta(cluster, pdbName(cluster.metadata.name)),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: selectorLabels(cluster.metadata.name) },
    },
  };
}
