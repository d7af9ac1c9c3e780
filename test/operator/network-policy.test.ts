/**
 * spec.network.clientFrom against a real kube-apiserver: the CRD stores NetworkPolicy peers of every kind and
 * refuses malformed ones with the server's own messages; the reconciler (given the operator's namespace, as main
 * gives it) makes a NetworkPolicy the API server accepts, whose HTTP rule admits exactly those peers, the
 * cluster's pods and the operator's pods; dropping clientFrom opens the HTTP port again (the apply replaces the
 * rule list), an empty list leaves only the cluster and the operator; a peer the CRD lets through but a
 * NetworkPolicy may not hold (a bad label key) makes the spec invalid and leaves the policy as it was. No
 * network plugin runs here, so what the policy admits is checked as written, not as enforced.
 */
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1NetworkPolicy,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoCluster, NetworkPeer } from '../../operator/src/api-types.js';
import { ClientNodeKubeApi } from '../../operator/src/kube.js';
import { Reconciler } from '../../operator/src/reconcile.js';
import { waitFor } from '../integration/harness.js';
import { type ControlPlane, startControlPlane } from './control-plane.js';
import { GROUP, installCrd, QuietNodes } from './fixtures.js';

const BUILD_TIMEOUT_MS = 45 * 60_000;
const NS = 'dyn-netpol';
const OPERATOR_NS = 'dynamo-system';

const OWN = {
  podSelector: {
    matchLabels: {
      'app.kubernetes.io/name': 'dynamo-kv',
      'app.kubernetes.io/instance': 'demo',
      'dynamokv.io/cluster': 'demo',
    },
  },
};
const OPERATOR = {
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': OPERATOR_NS } },
  podSelector: { matchLabels: { 'app.kubernetes.io/component': 'operator' } },
};
const PEER_RULE = { _from: [OWN], ports: [{ protocol: 'TCP', port: 7070 }] };
const HTTP = [{ protocol: 'TCP', port: 8080 }];

const CLIENT_FROM: NetworkPeer[] = [
  { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
  {
    namespaceSelector: {
      matchExpressions: [{ key: 'team', operator: 'In', values: ['payments', 'search'] }],
    },
    podSelector: { matchLabels: { 'example.com/role': 'dynamo-client' } },
  },
  { podSelector: { matchExpressions: [{ key: 'dynamo-client', operator: 'Exists' }] } },
  { ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.1.0/24'] } },
  { ipBlock: { cidr: '2001:db8::/32' } },
];

describe('spec.network.clientFrom on a real API server', () => {
  let cp: ControlPlane;
  let custom: CustomObjectsApi;
  let networking: NetworkingV1Api;
  let reconciler: Reconciler;

  beforeAll(async () => {
    cp = await startControlPlane();
    custom = cp.kubeConfig.makeApiClient(CustomObjectsApi);
    networking = cp.kubeConfig.makeApiClient(NetworkingV1Api);
    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await installCrd(cp.kubeConfig, NS);
    reconciler = new Reconciler({
      kube: new ClientNodeKubeApi(cp.kubeConfig, 'netpol-test'),
      nodes: new QuietNodes(),
      log: pino({ level: process.env.DYNAMO_TEST_LOG ?? 'silent' }),
      nodeUrl: (cluster, ordinal, _ip, scheme) => `${scheme}://${cluster.metadata.name}-${ordinal}.test:8080`,
      operatorNamespace: OPERATOR_NS,
    });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  const body = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: 'dynamokv.io/v1alpha1',
    kind: 'DynamoCluster',
    metadata: { name },
    spec,
  });
  const getCluster = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...GROUP, namespace: NS, name })) as DynamoCluster;
  const policy = (): Promise<V1NetworkPolicy> =>
    networking.readNamespacedNetworkPolicy({ name: 'demo-peers-only', namespace: NS });
  // Small and plain: the NetworkPolicy is made before certificates, tokens and the StatefulSet.
  const SPEC = { nodes: 3, tokensPerNode: 8, storage: { size: '1Gi' }, tls: { mode: 'disabled' } };

  async function patchNetwork(network: unknown): Promise<void> {
    await custom.patchNamespacedCustomObject(
      { ...GROUP, namespace: NS, name: 'demo', body: { spec: { network } }, fieldValidation: 'Strict' },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** The API server's message for a refused DynamoCluster. */
  async function rejection(clientFrom: unknown[]): Promise<string> {
    try {
      await custom.createNamespacedCustomObject({
        ...GROUP,
        namespace: NS,
        body: body('bad', { ...SPEC, network: { clientFrom } }),
        fieldValidation: 'Strict',
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ApiException);
      const e = err as ApiException<unknown>;
      expect([400, 422]).toContain(e.code);
      const parsed = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      return String((parsed as { message?: string }).message);
    }
    throw new Error('the API server accepted an invalid clientFrom');
  }

  it('refuses malformed peers with the CRD’s messages', async () => {
    expect(await rejection([{}])).toMatch(/must set namespaceSelector, podSelector or ipBlock/);
    expect(await rejection([{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }])).toMatch(
      /sets either ipBlock or selectors, not both/,
    );
    expect(await rejection([{ podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }])).toMatch(
      /values must be non-empty for In and NotIn/,
    );
    expect(
      await rejection([
        { podSelector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] } },
      ]),
    ).toMatch(/values must be non-empty for In and NotIn, and empty for Exists/);
    expect(await rejection([{ podSelector: { matchExpressions: [{ key: 'a', operator: 'Gt' }] } }])).toMatch(
      /operator: Unsupported value: "Gt"/,
    );
    expect(await rejection([{ ipBlock: { cidr: 'everywhere' } }])).toMatch(/clientFrom\[0\]\.ipBlock\.cidr/);
    expect(await rejection([{ ipBlock: {} }])).toMatch(/cidr: Required value/);
    expect(await rejection([{ podSelector: { matchLabels: { a: 'not a value' } } }])).toMatch(
      /matchLabels\.a/,
    );
    expect(await rejection([{ namespaceSelector: { matchNames: ['x'] } }])).toMatch(/unknown field/);
  });

  it('stores the peers and makes a NetworkPolicy whose HTTP rule admits them, the cluster and the operator', async () => {
    await custom.createNamespacedCustomObject({
      ...GROUP,
      namespace: NS,
      body: body('demo', { ...SPEC, network: { clientFrom: CLIENT_FROM } }),
      fieldValidation: 'Strict',
    });
    const cluster = await getCluster('demo');
    // Nothing pruned: the schema holds every field of a peer.
    expect(cluster.spec.network?.clientFrom).toEqual(CLIENT_FROM);
    await reconciler.reconcile(NS, 'demo');
    expect((await getCluster('demo')).status?.conditions?.find((c) => c.type === 'Valid')?.status).toBe(
      'True',
    );
    const np = await policy();
    expect(np.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'DynamoCluster',
      uid: cluster.metadata.uid,
    });
    expect(np.spec?.podSelector).toEqual(OWN.podSelector);
    expect(np.spec?.policyTypes).toEqual(['Ingress']);
    expect(np.spec?.ingress).toEqual([PEER_RULE, { _from: [OWN, OPERATOR, ...CLIENT_FROM], ports: HTTP }]);
  });

  it('opens the HTTP port again when clientFrom is dropped, and admits only the cluster and operator for []', async () => {
    await patchNetwork({ clientFrom: null });
    expect((await getCluster('demo')).spec.network?.clientFrom).toBeUndefined();
    await reconciler.reconcile(NS, 'demo');
    expect((await policy()).spec?.ingress).toEqual([PEER_RULE, { ports: HTTP }]);

    await patchNetwork({ clientFrom: [] });
    await reconciler.reconcile(NS, 'demo');
    expect((await policy()).spec?.ingress).toEqual([PEER_RULE, { _from: [OWN, OPERATOR], ports: HTTP }]);
  });

  it('refuses, as an invalid spec, a peer the CRD lets through but a NetworkPolicy may not hold', async () => {
    const bad: NetworkPeer[] = [{ podSelector: { matchLabels: { 'not a key!': 'x' } } }];
    // The API server would refuse such a NetworkPolicy: applying it would fail on every pass.
    const dryRun = networking.createNamespacedNetworkPolicy({
      namespace: NS,
      dryRun: 'All',
      body: {
        metadata: { name: 'probe' },
        spec: { podSelector: {}, ingress: [{ _from: bad, ports: HTTP }] },
      },
    });
    await expect(dryRun).rejects.toMatchObject({ code: 422 });

    await patchNetwork({ clientFrom: bad });
    const before = (await policy()).metadata?.generation;
    await reconciler.reconcile(NS, 'demo');
    const valid = (await getCluster('demo')).status?.conditions?.find((c) => c.type === 'Valid');
    expect(valid).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(valid?.message).toMatch(
      /clientFrom\[0\]\.podSelector\.matchLabels has an invalid label key 'not a key!'/,
    );
    const np = await policy();
    expect(np.metadata?.generation).toBe(before);
    expect(np.spec?.ingress).toEqual([PEER_RULE, { _from: [OWN, OPERATOR], ports: HTTP }]);

    // Fixed, it applies.
    await patchNetwork({ clientFrom: CLIENT_FROM.slice(0, 1) });
    await reconciler.reconcile(NS, 'demo');
    expect((await policy()).spec?.ingress).toEqual([
      PEER_RULE,
      { _from: [OWN, OPERATOR, CLIENT_FROM[0]], ports: HTTP },
    ]);
  });
});
