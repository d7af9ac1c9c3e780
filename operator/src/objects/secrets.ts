// The cluster's context secret: random bytes every node of the cluster authenticates client contexts with.
import { randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { DynamoCluster } from '../api-types.js';
import { contextSecretName } from '../names.js';
import { ownedMeta } from './meta.js';

/** The key of the secret's one file. */
export const CONTEXT_SECRET_KEY = 'context-secret';

/** A new context secret (created once: replacing it would void every context clients hold). */
export function buildContextSecret(cluster: DynamoCluster): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: ownedMeta(cluster, contextSecretName(cluster.metadata.name)),
    type: 'Opaque',
    data: { [CONTEXT_SECRET_KEY]: Buffer.from(randomBytes(32).toString('hex')).toString('base64') },
  };
}
