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
/** The cluster CA (tls.crt, tls.key): made once, never replaced by the operator. */
export const caSecretName = (cluster: string): string => `${cluster}-ca`;
/** Every node's certificate and key (`<pod>.crt`, `<pod>.key`) and the CA certificate (`ca.crt`). */
export const tlsSecretName = (cluster: string): string => `${cluster}-tls`;
/** Client tokens: admin, write, read, the operator's own, and the `tokens` file nodes read. */
export const authSecretName = (cluster: string): string => `${cluster}-auth`;
/** cert-manager mode: the Certificate of a node, and the Secret cert-manager writes it to. */
export const certificateName = (cluster: string, ordinal: number): string =>
  `${podName(cluster, ordinal)}-tls`;
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
 * The DNS names a node's certificate is valid for: the pod under the headless peer Service (every form a
 * resolver's search path accepts), the client Service (which load-balances to any node), and localhost for
 * `kubectl port-forward`.
 */
export function nodeDnsNames(cluster: Pick<DynamoCluster, 'metadata'>, ordinal: number): string[] {
  const { name, namespace } = cluster.metadata;
  const pod = `${podName(name, ordinal)}.${peerServiceName(name)}`;
  const client = clientServiceName(name);
  return [
    `${pod}.${namespace}.svc.cluster.local`,
    `${pod}.${namespace}.svc`,
    `${pod}.${namespace}`,
    pod,
    `${client}.${namespace}.svc.cluster.local`,
    `${client}.${namespace}.svc`,
    `${client}.${namespace}`,
    client,
    'localhost',
  ];
}

/** IP addresses in every node certificate: loopback, for `kubectl port-forward` (pod IPs change on restart). */
export const NODE_CERTIFICATE_IPS = ['127.0.0.1'];

/**
 * Seeds: the first `seeds` pods by ordinal, as host:peer-port. Pod 0 is always one, so the first node finds itself
 * in the list and bootstraps the ring alone. Not capped by the node count: the list is part of the pod template,
 * and a list that changed with spec.nodes would restart every pod on each scale (nodes skip seeds they cannot reach).
 */
export function seedAddresses(cluster: Pick<DynamoCluster, 'metadata'>, seeds: number): string[] {
  return Array.from({ length: Math.max(1, seeds) }, (_, i) => `${podHost(cluster, i)}:${PEER_PORT}`);
}

export type Scheme = 'http' | 'https';

/**
 * Default base URL of a node's HTTP API: its pod IP when known, else its stable DNS name; https when the cluster
 * runs with TLS (the client then checks the certificate against the pod's DNS name, node-admin.ts).
 */
export function defaultNodeUrl(
  cluster: Pick<DynamoCluster, 'metadata'>,
  ordinal: number,
  podIP: string | undefined,
  scheme: Scheme = 'http',
): string {
  const host = podIP ? (podIP.includes(':') ? `[${podIP}]` : podIP) : podHost(cluster, ordinal);
  return `${scheme}://${host}:${HTTP_PORT}`;
}
