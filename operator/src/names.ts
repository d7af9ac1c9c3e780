// Names, labels and DNS addresses of a cluster's objects: the one place that says what is called what.
import { type DynamoCluster, HTTP_PORT, PEER_PORT } from './api-types.js';

export const LABEL_CLUSTER = 'dynamokv.io/cluster';
export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'dynamo-operator';
/** Label the StatefulSet controller puts on each pod. */
export const LABEL_POD_NAME = 'statefulset.kubernetes.io/pod-name';

/** Labels that pick a cluster's pods: never change them, a StatefulSet's selector is immutable. */
export function selectorLabels(clusterName: string): Record<string, string> {
  return { [LABEL_NAME]: 'dynamo-kv', [LABEL_INSTANCE]: clusterName, [LABEL_CLUSTER]: clusterName };
}

/** Labels on every object the operator owns. */
export function commonLabels(clusterName: string): Record<string, string> {
  return { ...selectorLabels(clusterName), [LABEL_COMPONENT]: 'node', [LABEL_MANAGED_BY]: MANAGED_BY };
}

export const statefulSetName = (cluster: string): string => cluster;
export const peerServiceName = (cluster: string): string => `${cluster}-peers`;
export const clientServiceName = (cluster: string): string => cluster;
export const tokenConfigMapName = (cluster: string): string => `${cluster}-tokens`;
export const contextSecretName = (cluster: string): string => `${cluster}-context-secret`;
export const pdbName = (cluster: string): string => cluster;
export const networkPolicyName = (cluster: string): string => `${cluster}-peers-only`;
export const podName = (cluster: string, ordinal: number): string => `${cluster}-${ordinal}`;
export const VOLUME_CLAIM = 'data';
/** The PersistentVolumeClaim the StatefulSet made for a pod. */
export const pvcName = (cluster: string, ordinal: number): string =>
  `${VOLUME_CLAIM}-${podName(cluster, ordinal)}`;

/** Ordinal of a pod of this cluster from its name, or undefined when the name is not one of the cluster's pods. */
export function ordinalOf(cluster: string, pod: string): number | undefined {
  const prefix = `${cluster}-`;
  if (!pod.startsWith(prefix)) return undefined;
  const rest = pod.slice(prefix.length);
  return /^(0|[1-9][0-9]*)$/.test(rest) ? Number(rest) : undefined;
}

/** Stable DNS name of a pod through the headless peer Service. */
export function podHost(cluster: Pick<DynamoCluster, 'metadata'>, ordinal: number): string {
  const { name, namespace } = cluster.metadata;
  return `${podName(name, ordinal)}.${peerServiceName(name)}.${namespace}.svc.cluster.local`;
}

/**
 * Seeds: the first `seeds` pods by ordinal, as host:peer-port. Pod 0 is always one, so the first node finds itself
 * in the list and bootstraps the ring alone. Not capped by the node count: the list is part of the pod template,
 * and a list that changed with spec.nodes would restart every pod on each scale (nodes skip seeds they cannot reach).
 */
export function seedAddresses(cluster: Pick<DynamoCluster, 'metadata'>, seeds: number): string[] {
  return Array.from({ length: Math.max(1, seeds) }, (_, i) => `${podHost(cluster, i)}:${PEER_PORT}`);
}

/** Default base URL of a node's HTTP API: its pod IP when known, else its stable DNS name. */
export function defaultNodeUrl(
  cluster: Pick<DynamoCluster, 'metadata'>,
  ordinal: number,
  podIP: string | undefined,
): string {
  const host = podIP ? (podIP.includes(':') ? `[${podIP}]` : podIP) : podHost(cluster, ordinal);
  return `http://${host}:${HTTP_PORT}`;
}
