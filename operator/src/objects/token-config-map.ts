// The token ConfigMap: each node's tokens, mounted into every pod so a new node starts with the tokens chosen for it.
import type { V1ConfigMap } from '@kubernetes/client-node';
import type { DynamoCluster } from '../api-types.js';
import { tokenConfigMapName } from '../names.js';
import { FOUNDER_KEY, serializeAssignments, type TokenAssignments } from '../token-assignments.js';
import { ownedMeta } from './meta.js';

/** The ConfigMap of the given assignments; founder names the node that founds a new cluster, if any. */
export function buildTokenConfigMap(
  cluster: DynamoCluster,
  assignments: TokenAssignments,
  founder?: string,
): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: ownedMeta(cluster, tokenConfigMapName(cluster.metadata.name)),
    data: { ...serializeAssignments(assignments), ...(founder ? { [FOUNDER_KEY]: founder } : {}) },
  };
}
