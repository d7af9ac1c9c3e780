// The StatefulSet running a cluster's nodes: stable names and volumes per ordinal, created one at a time in order.
import type { V1Affinity, V1EnvVar, V1PersistentVolumeClaim, V1StatefulSet } from '@kubernetes/client-node';
import { DATA_DIR, type DynamoCluster, type DynamoClusterSpec, HTTP_PORT, PEER_PORT } from '../api-types.js';
import {
  authSecretName,
  contextSecretName,
  LABEL_COMPONENT,
  peerServiceName,
  seedAddresses,
  selectorLabels,
  statefulSetName,
  tlsSecretName,
  tokenConfigMapName,
  VOLUME_CLAIM,
} from '../names.js';
import { FOUNDER_KEY } from '../token-assignments.js';
import { TOKENS_FILE_KEY } from './auth.js';
import { ownedMeta } from './meta.js';
import { CONTEXT_SECRET_KEY } from './secrets.js';
import { CA_CERT_KEY } from './tls.js';

export const CONTAINER_NAME = 'dynamo';
/** Where the token ConfigMap is mounted: one file per node, named after the pod. */
export const TOKENS_DIR = '/etc/dynamo/tokens';
/** Where the cluster's secrets are mounted. */
export const SECRETS_DIR = '/etc/dynamo/secrets';
/** Where the node certificate Secret is mounted: `<pod>.crt`, `<pod>.key` and `ca.crt`. */
export const TLS_DIR = '/etc/dynamo/tls';
/** Where the client tokens file is mounted. */
export const AUTH_DIR = '/etc/dynamo/auth';
/** How long a pod waits for its tokens file (and its certificate) before failing (and being restarted by the kubelet). */
export const TOKENS_WAIT_SECONDS = 120;
/** Startup probe failures allowed (every 5 s): how long a node may take to answer /health the first time. */
export const STARTUP_PROBE_FAILURES = 120;
/** Where the kubelet reads a container's termination message (its default path). */
export const TERMINATION_MESSAGE_PATH = '/dev/termination-log';
/** Annotation on the StatefulSet: the TLS mode its nodes were created with (see Reconciler.observe). */
export const TLS_MODE_ANNOTATION = 'dynamokv.io/tls-mode';

/**
 * The container's entry point. A node must start with the tokens the operator chose for it (they are persisted
 * on first start and never change), so it waits for its entry in the mounted ConfigMap and fails rather than
 * start with tokens of its own; with TLS it waits for its certificate the same way (the operator writes it
 * before the pod exists, but a Secret volume may lag). The node the ConfigMap names as founder (a new cluster's
 * first) starts with --bootstrap; every other node waits to hear from a member before it serves.
 */
export const NODE_START_SCRIPT = [
  'set -eu',
  `f="${TOKENS_DIR}/\${DYNAMO_NODE_ID}"`,
  'waited=0',
  'while [ ! -s "$f" ]; do',
  `  if [ "$waited" -ge ${TOKENS_WAIT_SECONDS} ]; then echo "no tokens for \${DYNAMO_NODE_ID} in $f" >&2; exit 1; fi`,
  '  sleep 2; waited=$((waited + 2))',
  'done',
  `if [ -n "\${DYNAMO_TLS_CERT:-}" ]; then`,
  '  while [ ! -s "$DYNAMO_TLS_CERT" ] || [ ! -s "$DYNAMO_TLS_KEY" ]; do',
  `    if [ "$waited" -ge ${TOKENS_WAIT_SECONDS} ]; then echo "no certificate for \${DYNAMO_NODE_ID} at $DYNAMO_TLS_CERT" >&2; exit 1; fi`,
  '    sleep 2; waited=$((waited + 2))',
  '  done',
  'fi',
  'DYNAMO_INITIAL_TOKENS="$(cat "$f")"',
  'export DYNAMO_INITIAL_TOKENS',
  `if [ "$(cat "${TOKENS_DIR}/${FOUNDER_KEY}" 2>/dev/null || true)" = "\${DYNAMO_NODE_ID}" ]; then export DYNAMO_BOOTSTRAP=true; fi`,
  'exec node dist/node/src/cli/main.js node',
].join('\n');

/** Whether the nodes run with TLS (either mode: both mount `<cluster>-tls`). */
export const tlsOn = (spec: DynamoClusterSpec): boolean => spec.tls.mode !== 'disabled';

/**
 * Environment of a node: its identity from the downward API, the ring settings from the spec, and its
 * certificate (its own files, by pod name, in the shared Secret) and the client tokens file when on.
 */
export function nodeEnv(cluster: DynamoCluster, spec: DynamoClusterSpec): V1EnvVar[] {
  const { name, namespace } = cluster.metadata;
  const podDns = `$(DYNAMO_NODE_ID).${peerServiceName(name)}.${namespace}.svc.cluster.local`;
  const tls = tlsOn(spec);
  const cert = `${TLS_DIR}/$(DYNAMO_NODE_ID).crt`;
  const key = `${TLS_DIR}/$(DYNAMO_NODE_ID).key`;
  return [
    { name: 'DYNAMO_NODE_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    // The node's rack: its zone label as Kubernetes (1.35+, PodTopologyLabelsAdmission) copies it from
    // the pod's node onto the pod when the pod is bound; empty (no rack) where it does not.
    {
      name: 'DYNAMO_RACK',
      valueFrom: { fieldRef: { fieldPath: `metadata.labels['${spec.rackTopologyKey}']` } },
    },
    { name: 'DYNAMO_CLUSTER_NAME', value: name },
    { name: 'DYNAMO_HTTP_HOST', value: '0.0.0.0' },
    { name: 'DYNAMO_HTTP_PORT', value: String(HTTP_PORT) },
    { name: 'DYNAMO_PEER_HOST', value: '0.0.0.0' },
    { name: 'DYNAMO_PEER_PORT', value: String(PEER_PORT) },
    // $(VAR) expands variables defined above it: each pod advertises its own stable DNS name.
    { name: 'DYNAMO_ADVERTISE', value: `${podDns}:${PEER_PORT}` },
    { name: 'DYNAMO_ADVERTISE_HTTP', value: `${tls ? 'https' : 'http'}://${podDns}:${HTTP_PORT}` },
    { name: 'DYNAMO_SEEDS', value: seedAddresses(cluster, spec.seeds).join(',') },
    { name: 'DYNAMO_TOKENS', value: String(spec.tokensPerNode) },
    { name: 'DYNAMO_DATA_DIR', value: DATA_DIR },
    // A claim kept after its node left (retainOnScaleDown) holds only data handed over: scaled up again, the
    // node clears it and joins as a new member instead of refusing to start for ever.
    { name: 'DYNAMO_REJOIN_AFTER_LEAVE', value: 'true' },
    // Why a node could not start (token_mismatch, removed_member, ...) lands in the pod's status, where the
    // operator reports it (node-failures.ts).
    { name: 'DYNAMO_TERMINATION_MESSAGE_FILE', value: TERMINATION_MESSAGE_PATH },
    { name: 'DYNAMO_DEFAULT_N', value: String(spec.replication.n) },
    { name: 'DYNAMO_DEFAULT_R', value: String(spec.replication.r) },
    { name: 'DYNAMO_DEFAULT_W', value: String(spec.replication.w) },
    { name: 'DYNAMO_HINT_WINDOW_MS', value: String(spec.hintedHandoff.windowSeconds * 1000) },
    { name: 'DYNAMO_ANTI_ENTROPY_INTERVAL_MS', value: String(spec.antiEntropy.intervalSeconds * 1000) },
    { name: 'DYNAMO_LOG_LEVEL', value: 'info' },
    { name: 'DYNAMO_CONTEXT_SECRET_FILE', value: `${SECRETS_DIR}/${CONTEXT_SECRET_KEY}` },
    ...(tls
      ? [
          // One certificate for both ports: peers check its common name, clients its DNS names.
          { name: 'DYNAMO_TLS_CERT', value: cert },
          { name: 'DYNAMO_TLS_KEY', value: key },
          { name: 'DYNAMO_TLS_CA', value: `${TLS_DIR}/${CA_CERT_KEY}` },
          { name: 'DYNAMO_HTTP_TLS_CERT', value: cert },
          { name: 'DYNAMO_HTTP_TLS_KEY', value: key },
        ]
      : []),
    ...(spec.auth.enabled
      ? [{ name: 'DYNAMO_AUTH_TOKENS_FILE', value: `${AUTH_DIR}/${TOKENS_FILE_KEY}` }]
      : []),
  ];
}

/** Spread nodes over hosts first and zones (racks) second; preferred, so small clusters still schedule. */
export function antiAffinity(clusterName: string, rackTopologyKey: string): V1Affinity {
  const labelSelector = { matchLabels: selectorLabels(clusterName) };
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        { weight: 100, podAffinityTerm: { labelSelector, topologyKey: 'kubernetes.io/hostname' } },
        { weight: 50, podAffinityTerm: { labelSelector, topologyKey: rackTopologyKey } },
      ],
    },
  };
}

/** The StatefulSet with the given replica count (the scaling steps decide it; never spec.nodes directly). */
export function buildStatefulSet(
  cluster: DynamoCluster,
  spec: DynamoClusterSpec,
  replicas: number,
): V1StatefulSet {
  const name = cluster.metadata.name;
  const selector = selectorLabels(name);
  const overrides = spec.podTemplate;
  const tls = tlsOn(spec);
  // The kubelet probes HTTPS without checking the certificate, as for any probe.
  const scheme = tls ? 'HTTPS' : 'HTTP';
  const meta = ownedMeta(cluster, statefulSetName(name));
  meta.annotations = { [TLS_MODE_ANNOTATION]: spec.tls.mode };
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: meta,
    spec: {
      replicas,
      serviceName: peerServiceName(name),
      podManagementPolicy: 'OrderedReady',
      updateStrategy: { type: 'RollingUpdate' },
      selector: { matchLabels: selector },
      template: {
        metadata: {
          // The selector labels win over user labels: a pod that escaped its selector would be orphaned.
          labels: { ...overrides.labels, ...selector, [LABEL_COMPONENT]: 'node' },
          ...(overrides.annotations ? { annotations: overrides.annotations } : {}),
        },
        spec: {
          terminationGracePeriodSeconds: 60,
          // Nodes never call the Kubernetes API: no token of theirs to steal.
          automountServiceAccountToken: false,
          // The image's non-root user; fsGroup makes the data volume writable by it on any storage.
          // OnRootMismatch: the kubelet re-owns the volume only when its root is not already the group's,
          // instead of walking every file of the store on every start.
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            runAsGroup: 65532,
            fsGroup: 65532,
            fsGroupChangePolicy: 'OnRootMismatch',
            seccompProfile: { type: 'RuntimeDefault' },
          },
          affinity: antiAffinity(name, spec.rackTopologyKey),
          ...(overrides.nodeSelector ? { nodeSelector: overrides.nodeSelector } : {}),
          ...(overrides.tolerations ? { tolerations: overrides.tolerations } : {}),
          ...(overrides.priorityClassName ? { priorityClassName: overrides.priorityClassName } : {}),
          containers: [
            {
              name: CONTAINER_NAME,
              image: spec.image,
              imagePullPolicy: spec.imagePullPolicy,
              command: ['sh', '-c', NODE_START_SCRIPT],
              // The node writes its fatal reason there; a failure before it runs (the start script) shows its log.
              terminationMessagePath: TERMINATION_MESSAGE_PATH,
              terminationMessagePolicy: 'FallbackToLogsOnError',
              ports: [
                { name: 'http', containerPort: HTTP_PORT, protocol: 'TCP' },
                { name: 'peer', containerPort: PEER_PORT, protocol: 'TCP' },
              ],
              env: nodeEnv(cluster, spec),
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              resources: spec.resources,
              readinessProbe: {
                httpGet: { path: '/ready', port: 'http', scheme },
                periodSeconds: 5,
                timeoutSeconds: 3,
                failureThreshold: 3,
              },
              // A node with a large store may take minutes to open it before it first answers: until then only
              // this probe runs (up to 10 minutes), so liveness never kills a node that is starting.
              startupProbe: {
                httpGet: { path: '/health', port: 'http', scheme },
                periodSeconds: 5,
                timeoutSeconds: 3,
                failureThreshold: STARTUP_PROBE_FAILURES,
              },
              livenessProbe: {
                httpGet: { path: '/health', port: 'http', scheme },
                periodSeconds: 10,
                timeoutSeconds: 5,
                failureThreshold: 6,
              },
              // Give endpoints and peers a moment to stop sending here before the process gets SIGTERM.
              lifecycle: { preStop: { exec: { command: ['sh', '-c', 'sleep 5'] } } },
              volumeMounts: [
                { name: VOLUME_CLAIM, mountPath: DATA_DIR },
                { name: 'tokens', mountPath: TOKENS_DIR, readOnly: true },
                { name: 'secrets', mountPath: SECRETS_DIR, readOnly: true },
                ...(tls ? [{ name: 'tls', mountPath: TLS_DIR, readOnly: true }] : []),
                ...(spec.auth.enabled ? [{ name: 'auth', mountPath: AUTH_DIR, readOnly: true }] : []),
              ],
            },
          ],
          volumes: [
            { name: 'tokens', configMap: { name: tokenConfigMapName(name) } },
            { name: 'secrets', secret: { secretName: contextSecretName(name), defaultMode: 0o400 } },
            ...(tls
              ? [{ name: 'tls', secret: { secretName: tlsSecretName(name), defaultMode: 0o400 } }]
              : []),
            // Only the tokens file: the pods need no token of their own.
            ...(spec.auth.enabled
              ? [
                  {
                    name: 'auth',
                    secret: {
                      secretName: authSecretName(name),
                      defaultMode: 0o400,
                      items: [{ key: TOKENS_FILE_KEY, path: TOKENS_FILE_KEY }],
                    },
                  },
                ]
              : []),
          ],
        },
      },
      volumeClaimTemplates: [
        {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          metadata: { name: VOLUME_CLAIM, labels: selector },
          spec: {
            accessModes: ['ReadWriteOnce'],
            ...(spec.storage.storageClassName ? { storageClassName: spec.storage.storageClassName } : {}),
            resources: { requests: { storage: spec.storage.size } },
          },
        },
      ],
    },
  };
}

/**
 * The desired StatefulSet with the claim template's size and class taken from the existing one: the API server
 * refuses to change volumeClaimTemplates, so a storage change applies to no node (the operator says so instead).
 */
export function keepImmutableFields(
  desired: V1StatefulSet,
  existing: V1StatefulSet | undefined,
): V1StatefulSet {
  const old = existing?.spec?.volumeClaimTemplates?.[0]?.spec;
  const claim = desired.spec?.volumeClaimTemplates?.[0];
  if (old === undefined || claim?.spec === undefined || desired.spec === undefined) return desired;
  const storage = old.resources?.requests?.storage ?? claim.spec.resources?.requests?.storage;
  const { storageClassName: _, ...rest } = claim.spec;
  const keptClaim: V1PersistentVolumeClaim = {
    ...claim,
    spec: {
      ...rest,
      ...(old.storageClassName ? { storageClassName: old.storageClassName } : {}),
      resources: storage === undefined ? {} : { requests: { storage } },
    },
  };
  return { ...desired, spec: { ...desired.spec, volumeClaimTemplates: [keptClaim] } };
}

/** The storage request of an existing StatefulSet's claim template, to tell users a change did not apply. */
export function claimedStorage(existing: V1StatefulSet | undefined): string | undefined {
  const request = existing?.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage;
  return request === undefined ? undefined : String(request);
}
