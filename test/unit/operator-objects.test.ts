import { describe, expect, it } from 'vitest';
import type { DynamoCluster, DynamoClusterSpecInput } from '../../operator/src/api-types.js';
import { seedAddresses } from '../../operator/src/names.js';
import { buildPodDisruptionBudget } from '../../operator/src/objects/disruption-budget.js';
import { buildClientService, buildPeerService } from '../../operator/src/objects/services.js';
import {
  buildStatefulSet,
  claimedStorage,
  keepImmutableFields,
  NODE_START_SCRIPT,
} from '../../operator/src/objects/statefulset.js';
import { buildTokenConfigMap } from '../../operator/src/objects/token-config-map.js';
import { withDefaults } from '../../operator/src/spec.js';

function cluster(spec: DynamoClusterSpecInput = {}): DynamoCluster {
  return {
    apiVersion: 'dynamokv.io/v1alpha1',
    kind: 'DynamoCluster',
    metadata: { name: 'demo', namespace: 'prod', uid: 'uid-42', generation: 1 },
    spec,
  };
}

function sts(spec: DynamoClusterSpecInput = {}, replicas = 3) {
  const c = cluster(spec);
  return buildStatefulSet(c, withDefaults(c.spec), replicas);
}

function envOf(spec: DynamoClusterSpecInput = {}): Map<string, { value?: string; fieldPath?: string }> {
  const env = sts(spec).spec?.template.spec?.containers[0]?.env ?? [];
  return new Map(env.map((e) => [e.name, { value: e.value, fieldPath: e.valueFrom?.fieldRef?.fieldPath }]));
}

const OWNER = {
  apiVersion: 'dynamokv.io/v1alpha1',
  kind: 'DynamoCluster',
  name: 'demo',
  uid: 'uid-42',
  controller: true,
  blockOwnerDeletion: true,
};

describe('owned objects', () => {
  it('all carry a controller ownerReference to the DynamoCluster, its labels and its namespace', () => {
    const c = cluster();
    const objects = [
      sts(),
      buildPeerService(c),
      buildClientService(c),
      buildPodDisruptionBudget(c),
      buildTokenConfigMap(c, new Map()),
    ];
    for (const object of objects) {
      expect(object.metadata?.ownerReferences, object.kind).toEqual([OWNER]);
      expect(object.metadata?.namespace).toBe('prod');
      expect(object.metadata?.labels).toMatchObject({
        'dynamokv.io/cluster': 'demo',
        'app.kubernetes.io/managed-by': 'dynamo-operator',
      });
      expect(object.apiVersion).toBeTruthy();
      expect(object.kind).toBeTruthy();
    }
  });

  it('select the pods by the labels the pod template carries', () => {
    const c = cluster({ podTemplate: { labels: { 'app.kubernetes.io/name': 'hijacked', team: 'storage' } } });
    const set = buildStatefulSet(c, withDefaults(c.spec), 3);
    const podLabels = set.spec?.template.metadata?.labels ?? {};
    const selectors = [
      set.spec?.selector.matchLabels,
      buildPeerService(c).spec?.selector,
      buildClientService(c).spec?.selector,
      buildPodDisruptionBudget(c).spec?.selector?.matchLabels,
    ];
    for (const selector of selectors) {
      expect(selector).toBeDefined();
      for (const [k, v] of Object.entries(selector ?? {})) expect(podLabels[k], k).toBe(v);
    }
    expect(podLabels.team).toBe('storage');
  });
});

describe('buildStatefulSet', () => {
  it('runs the given replicas in order with stable identities through the peer Service', () => {
    const set = sts({}, 4);
    expect(set.metadata?.name).toBe('demo');
    expect(set.spec?.replicas).toBe(4);
    expect(set.spec?.podManagementPolicy).toBe('OrderedReady');
    expect(set.spec?.serviceName).toBe('demo-peers');
    expect(set.spec?.updateStrategy?.type).toBe('RollingUpdate');
  });

  it('probes readiness on GET /ready and liveness on GET /health of port 8080 (HTTPS with TLS), with a preStop hook', () => {
    const container = sts().spec?.template.spec?.containers[0];
    expect(container?.ports).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'http', containerPort: 8080 }),
        expect.objectContaining({ name: 'peer', containerPort: 7070 }),
      ]),
    );
    expect(container?.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 'http', scheme: 'HTTPS' });
    expect(container?.livenessProbe?.httpGet).toEqual({ path: '/health', port: 'http', scheme: 'HTTPS' });
    expect(container?.lifecycle?.preStop?.exec?.command).toBeDefined();
    const plain = sts({ tls: { mode: 'disabled' } }).spec?.template.spec?.containers[0];
    expect(plain?.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 'http', scheme: 'HTTP' });
    expect(plain?.livenessProbe?.httpGet).toEqual({ path: '/health', port: 'http', scheme: 'HTTP' });
  });

  it('gives a starting node ten minutes to answer /health before liveness applies (a large store is scanned first)', () => {
    const container = sts().spec?.template.spec?.containers[0];
    expect(container?.startupProbe?.httpGet).toEqual({ path: '/health', port: 'http', scheme: 'HTTPS' });
    const { periodSeconds = 10, failureThreshold = 3 } = container?.startupProbe ?? {};
    expect(periodSeconds * failureThreshold).toBeGreaterThanOrEqual(600);
    // The startup probe replaces the liveness probe's initial delay.
    expect(container?.livenessProbe?.initialDelaySeconds).toBeUndefined();
  });

  it('runs the node as the image user with a read-only root filesystem, its volume writable through fsGroup', () => {
    const pod = sts().spec?.template.spec;
    expect(pod?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532 });
    // The kubelet re-owns the volume only when its root does not match, not every file at every start.
    expect(pod?.securityContext?.fsGroupChangePolicy).toBe('OnRootMismatch');
    expect(pod?.containers[0]?.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
  });

  it('gives each node its identity from the downward API and advertises its stable DNS name', () => {
    const env = envOf();
    expect(env.get('DYNAMO_NODE_ID')).toEqual({ fieldPath: 'metadata.name', value: undefined });
    expect(env.get('POD_IP')?.fieldPath).toBe('status.podIP');
    expect(env.get('DYNAMO_CLUSTER_NAME')?.value).toBe('demo');
    expect(env.get('DYNAMO_HTTP_HOST')?.value).toBe('0.0.0.0');
    expect(env.get('DYNAMO_HTTP_PORT')?.value).toBe('8080');
    expect(env.get('DYNAMO_PEER_PORT')?.value).toBe('7070');
    expect(env.get('DYNAMO_ADVERTISE')?.value).toBe(
      '$(DYNAMO_NODE_ID).demo-peers.prod.svc.cluster.local:7070',
    );
    expect(env.get('DYNAMO_ADVERTISE_HTTP')?.value).toBe(
      'https://$(DYNAMO_NODE_ID).demo-peers.prod.svc.cluster.local:8080',
    );
    expect(envOf({ tls: { mode: 'disabled' } }).get('DYNAMO_ADVERTISE_HTTP')?.value).toBe(
      'http://$(DYNAMO_NODE_ID).demo-peers.prod.svc.cluster.local:8080',
    );
    expect(env.get('DYNAMO_DATA_DIR')?.value).toBe('/var/lib/dynamo');
    // DYNAMO_NODE_ID must come before the variables that expand it.
    const names = (sts().spec?.template.spec?.containers[0]?.env ?? []).map((e) => e.name);
    expect(names.indexOf('DYNAMO_NODE_ID')).toBeLessThan(names.indexOf('DYNAMO_ADVERTISE'));
  });

  it('lets a node on a claim it left clear it and rejoin, and puts why a node cannot start in its pod status', () => {
    const env = envOf();
    expect(env.get('DYNAMO_REJOIN_AFTER_LEAVE')?.value).toBe('true');
    expect(env.get('DYNAMO_TERMINATION_MESSAGE_FILE')?.value).toBe('/dev/termination-log');
    const container = sts().spec?.template.spec?.containers[0];
    expect(container?.terminationMessagePath).toBe('/dev/termination-log');
    // A start script that fails before the node runs is reported by its last log lines.
    expect(container?.terminationMessagePolicy).toBe('FallbackToLogsOnError');
  });

  it('passes the ring settings from the spec', () => {
    const env = envOf({
      tokensPerNode: 64,
      replication: { n: 5, r: 3, w: 4 },
      hintedHandoff: { windowSeconds: 60 },
      antiEntropy: { intervalSeconds: 7 },
    });
    expect(env.get('DYNAMO_TOKENS')?.value).toBe('64');
    expect(env.get('DYNAMO_DEFAULT_N')?.value).toBe('5');
    expect(env.get('DYNAMO_DEFAULT_R')?.value).toBe('3');
    expect(env.get('DYNAMO_DEFAULT_W')?.value).toBe('4');
    expect(env.get('DYNAMO_HINT_WINDOW_MS')?.value).toBe('60000');
    expect(env.get('DYNAMO_ANTI_ENTROPY_INTERVAL_MS')?.value).toBe('7000');
  });

  it('lists the first `seeds` pods by ordinal as seeds, so pod 0 finds itself and bootstraps the ring', () => {
    const seeds = envOf({ seeds: 2 }).get('DYNAMO_SEEDS')?.value?.split(',');
    expect(seeds).toEqual([
      'demo-0.demo-peers.prod.svc.cluster.local:7070',
      'demo-1.demo-peers.prod.svc.cluster.local:7070',
    ]);
    expect(seedAddresses(cluster(), 1)).toEqual(['demo-0.demo-peers.prod.svc.cluster.local:7070']);
  });

  it('keeps the pod template the same whatever the replica count, so scaling restarts no pod', () => {
    expect(sts({}, 1).spec?.template).toEqual(sts({}, 7).spec?.template);
  });

  it('starts each node with its tokens from the mounted ConfigMap, failing rather than starting without', () => {
    const pod = sts().spec?.template.spec;
    const container = pod?.containers[0];
    expect(container?.command).toEqual(['sh', '-c', NODE_START_SCRIPT]);
    expect(NODE_START_SCRIPT).toContain(`/etc/dynamo/tokens/\${DYNAMO_NODE_ID}`);
    expect(NODE_START_SCRIPT).toContain('export DYNAMO_INITIAL_TOKENS');
    expect(NODE_START_SCRIPT).toContain('exit 1');
    expect(NODE_START_SCRIPT.trim().split('\n').at(-1)).toBe('exec node dist/node/src/cli/main.js node');
    expect(pod?.volumes).toContainEqual({ name: 'tokens', configMap: { name: 'demo-tokens' } });
    expect(container?.volumeMounts).toEqual(
      expect.arrayContaining([
        { name: 'data', mountPath: '/var/lib/dynamo' },
        { name: 'tokens', mountPath: '/etc/dynamo/tokens', readOnly: true },
      ]),
    );
  });

  it('claims a volume per node from the storage spec', () => {
    const claim = sts({ storage: { size: '50Gi', storageClassName: 'fast' } }).spec
      ?.volumeClaimTemplates?.[0];
    expect(claim?.metadata?.name).toBe('data');
    expect(claim?.spec).toEqual({
      accessModes: ['ReadWriteOnce'],
      storageClassName: 'fast',
      resources: { requests: { storage: '50Gi' } },
    });
    expect(sts().spec?.volumeClaimTemplates?.[0]?.spec?.storageClassName).toBeUndefined();
  });

  it('keeps an existing StatefulSet claim template, which the API server will not change', () => {
    const existing = sts({ storage: { size: '10Gi', storageClassName: 'slow' } });
    const desired = keepImmutableFields(sts({ storage: { size: '20Gi' } }), existing);
    expect(desired.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage).toBe('10Gi');
    expect(desired.spec?.volumeClaimTemplates?.[0]?.spec?.storageClassName).toBe('slow');
    expect(claimedStorage(existing)).toBe('10Gi');
    expect(keepImmutableFields(sts(), undefined)).toEqual(sts());
  });

  it("gives each node its rack from the pod's copy of its node's zone label", () => {
    const env = (spec?: Parameters<typeof sts>[0]) =>
      sts(spec).spec?.template.spec?.containers[0]?.env?.find((e) => e.name === 'DYNAMO_RACK');
    expect(env()?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.labels['topology.kubernetes.io/zone']");
    expect(env({ rackTopologyKey: 'example.com/rack' })?.valueFrom?.fieldRef?.fieldPath).toBe(
      "metadata.labels['example.com/rack']",
    );
  });

  it('spreads pods across hostnames and the rack topology key', () => {
    const terms = sts({ rackTopologyKey: 'example.com/rack' }).spec?.template.spec?.affinity?.podAntiAffinity
      ?.preferredDuringSchedulingIgnoredDuringExecution;
    expect(terms?.map((t) => t.podAffinityTerm.topologyKey)).toEqual([
      'kubernetes.io/hostname',
      'example.com/rack',
    ]);
    expect(terms?.[0]?.podAffinityTerm.labelSelector?.matchLabels).toMatchObject({
      'dynamokv.io/cluster': 'demo',
    });
  });

  it('applies pod template overrides and resources', () => {
    const pod = sts({
      podTemplate: {
        annotations: { 'prometheus.io/scrape': 'true' },
        nodeSelector: { disk: 'ssd' },
        tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' }],
        priorityClassName: 'high',
      },
      resources: { requests: { cpu: '500m' }, limits: { memory: '1Gi' } },
      image: 'registry/dynamo-kv:1.2.3',
      imagePullPolicy: 'Always',
    }).spec?.template;
    expect(pod?.metadata?.annotations).toEqual({ 'prometheus.io/scrape': 'true' });
    expect(pod?.spec?.nodeSelector).toEqual({ disk: 'ssd' });
    expect(pod?.spec?.tolerations?.[0]?.key).toBe('dedicated');
    expect(pod?.spec?.priorityClassName).toBe('high');
    expect(pod?.spec?.containers[0]?.resources).toEqual({
      requests: { cpu: '500m' },
      limits: { memory: '1Gi' },
    });
    expect(pod?.spec?.containers[0]?.image).toBe('registry/dynamo-kv:1.2.3');
    expect(pod?.spec?.containers[0]?.imagePullPolicy).toBe('Always');
  });
});

describe('Services, PodDisruptionBudget and token ConfigMap', () => {
  it('makes a headless peer Service that publishes not-ready pods on port 7070 "peer"', () => {
    const svc = buildPeerService(cluster());
    expect(svc.metadata?.name).toBe('demo-peers');
    expect(svc.spec?.clusterIP).toBe('None');
    expect(svc.spec?.publishNotReadyAddresses).toBe(true);
    expect(svc.spec?.ports).toContainEqual(expect.objectContaining({ name: 'peer', port: 7070 }));
  });

  it('makes a client Service on port 8080 "http"', () => {
    const svc = buildClientService(cluster());
    expect(svc.metadata?.name).toBe('demo');
    expect(svc.spec?.clusterIP).toBeUndefined();
    expect(svc.spec?.ports).toEqual([{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
  });

  it('allows one voluntary disruption at a time', () => {
    expect(buildPodDisruptionBudget(cluster()).spec?.maxUnavailable).toBe(1);
  });

  it('stores each node tokens under the pod name, comma-separated', () => {
    const cm = buildTokenConfigMap(
      cluster(),
      new Map([
        ['demo-1', ['c0000000000000000000000000000000']],
        ['demo-0', ['00000000000000000000000000000000', '80000000000000000000000000000000']],
      ]),
    );
    expect(cm.metadata?.name).toBe('demo-tokens');
    expect(cm.data).toEqual({
      'demo-0': '00000000000000000000000000000000,80000000000000000000000000000000',
      'demo-1': 'c0000000000000000000000000000000',
    });
    expect(Object.keys(cm.data ?? {})).toEqual(['demo-0', 'demo-1']);
  });
});
