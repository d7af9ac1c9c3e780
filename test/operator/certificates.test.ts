/**
 * The operator's certificates and client tokens against a real kube-apiserver, with the reconciler running
 * under the chart's own RBAC (it impersonates the operator's ServiceAccount, bound to the ClusterRole that
 * `helm template` renders): the cluster CA, node certificate and token Secrets are created with valid contents
 * before the pods that need them, a re-run regenerates nothing, an expiring certificate is renewed in place
 * (with an Event and status.tls), a user's edit of the tokens stays, the StatefulSet mounts them and sets the
 * environment, and in cert-manager mode the operator makes a Certificate per node and copies what cert-manager
 * issued. There is no controller manager and no kubelet: this test creates and readies the pods itself, and the
 * nodes' admin API is a fake that records how the operator called it. No cert-manager runs here either: a
 * stand-in CRD takes its Certificates, and this test writes the Secrets cert-manager would.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  ApiextensionsV1Api,
  AppsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
  setHeaderOptions,
  type V1CustomResourceDefinition,
  type V1Secret,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTokens } from '../../node/src/api/auth.js';
import {
  certificateValidity,
  createCa,
  issueCertificate,
  issuedBy,
} from '../../node/src/pki/certificates.js';
import type { DynamoCluster } from '../../operator/src/api-types.js';
import { ClientNodeKubeApi } from '../../operator/src/kube.js';
import { nodeDnsNames } from '../../operator/src/names.js';
import type { NodeAccess, NodeAdmin, RingView } from '../../operator/src/node-admin.js';
import { Reconciler } from '../../operator/src/reconcile.js';
import type { NodeStatus } from '../../operator/src/scaling.js';
import { HELM_INSTALL_TIMEOUT_MS, helmBinDir, type K8sObject, renderChart } from '../chart/render.js';
import { waitFor } from '../integration/harness.js';
import { type ControlPlane, startControlPlane } from './control-plane.js';

const BUILD_TIMEOUT_MS = 45 * 60_000;
const CRD = new URL('../../crds/dynamokv.io_dynamoclusters.yaml', import.meta.url);
const NS = 'dyn-tls';
const GROUP = { group: 'dynamokv.io', version: 'v1alpha1', plural: 'dynamoclusters' };
const DAY = 86_400_000;

/** Node admin APIs that answer and record the URL and credentials of every call. */
class RecordingNodes implements NodeAdmin {
  readonly calls: Array<{ url: string; access?: NodeAccess }> = [];
  async decommission(url: string, access?: NodeAccess): Promise<NodeStatus> {
    this.calls.push({ url, access });
    return { state: 'left', stream: null };
  }
  async status(url: string, access?: NodeAccess): Promise<NodeStatus> {
    this.calls.push({ url, access });
    return { state: 'up', stream: null };
  }
  async ring(url: string, _tokens?: boolean, access?: NodeAccess): Promise<RingView> {
    this.calls.push({ url, access });
    return { members: [] };
  }
  async storageBytes(url: string, access?: NodeAccess): Promise<number | undefined> {
    this.calls.push({ url, access });
    return 0;
  }
}

/** cert-manager's Certificate kind, accepting any spec (its schema is cert-manager's to enforce). */
const CERTIFICATE_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'certificates.cert-manager.io' },
  spec: {
    group: 'cert-manager.io',
    scope: 'Namespaced',
    names: {
      kind: 'Certificate',
      plural: 'certificates',
      singular: 'certificate',
      listKind: 'CertificateList',
    },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            // The client's model name of x-kubernetes-preserve-unknown-fields (it drops the YAML spelling).
            properties: { spec: { type: 'object', x_kubernetes_preserve_unknown_fields: true } },
          },
        },
      },
    ],
  },
};

describe('the operator’s certificates and tokens on a real API server, under the chart’s RBAC', () => {
  let cp: ControlPlane;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let apps: AppsV1Api;
  let operatorUser: string;
  let operatorConfig: KubeConfig;
  const nodes = new RecordingNodes();
  const clock = { now: new Date() };
  let reconciler: Reconciler;

  beforeAll(
    async () => {
      await helmBinDir();
      cp = await startControlPlane();
      core = cp.kubeConfig.makeApiClient(CoreV1Api);
      custom = cp.kubeConfig.makeApiClient(CustomObjectsApi);
      apps = cp.kubeConfig.makeApiClient(AppsV1Api);
      await core.createNamespace({ body: { metadata: { name: NS } } });
      const ext = cp.kubeConfig.makeApiClient(ApiextensionsV1Api);
      await ext.createCustomResourceDefinition({
        body: loadYaml<V1CustomResourceDefinition>(readFileSync(CRD, 'utf8')),
      });
      await ext.createCustomResourceDefinition({ body: CERTIFICATE_CRD as V1CustomResourceDefinition });
      // The operator's ClusterRole and its binding, as the chart renders them.
      const { objects } = await renderChart({}, { includeCrds: false });
      const rbac = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding');
      expect(rbac.map((o) => o.kind).sort()).toEqual(['ClusterRole', 'ClusterRoleBinding']);
      const generic = KubernetesObjectApi.makeApiClient(cp.kubeConfig);
      for (const object of rbac) await generic.create(object);
      const binding = rbac.find((o) => o.kind === 'ClusterRoleBinding') as K8sObject;
      const subject = binding.subjects[0] as { name: string; namespace: string };
      operatorUser = `system:serviceaccount:${subject.namespace}:${subject.name}`;
      operatorConfig = new KubeConfig();
      const admin = cp.kubeConfig.getCurrentUser()!;
      operatorConfig.loadFromOptions({
        clusters: cp.kubeConfig.clusters,
        users: [{ name: 'operator', token: admin.token, impersonateUser: operatorUser }],
        contexts: [{ name: 'operator', cluster: cp.kubeConfig.clusters[0]!.name, user: 'operator' }],
        currentContext: 'operator',
      });
      await waitFor(
        'the CRDs to be served',
        async () => {
          await custom.listNamespacedCustomObject({ ...GROUP, namespace: NS });
          await custom.listNamespacedCustomObject({
            group: 'cert-manager.io',
            version: 'v1',
            plural: 'certificates',
            namespace: NS,
          });
          return true;
        },
        30_000,
      );
      reconciler = new Reconciler({
        kube: new ClientNodeKubeApi(operatorConfig, 'tls-test'),
        nodes,
        log: pino({ level: process.env.DYNAMO_TEST_LOG ?? 'silent' }),
        nodeUrl: (cluster, ordinal, _ip, scheme) =>
          `${scheme}://${cluster.metadata.name}-${ordinal}.test:8080`,
        now: () => clock.now,
      });
    },
    Math.max(BUILD_TIMEOUT_MS, HELM_INSTALL_TIMEOUT_MS),
  );

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  const secret = (name: string) => core.readNamespacedSecret({ name, namespace: NS });
  const filesOf = (s: V1Secret): Record<string, string> =>
    Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
    );
  const getCluster = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...GROUP, namespace: NS, name })) as DynamoCluster;

  async function createCluster(name: string, spec: Record<string, unknown>): Promise<void> {
    await custom.createNamespacedCustomObject({
      ...GROUP,
      namespace: NS,
      body: { apiVersion: 'dynamokv.io/v1alpha1', kind: 'DynamoCluster', metadata: { name }, spec },
      fieldValidation: 'Strict',
    });
  }

  /** Plays the StatefulSet controller and kubelet: the pods of the StatefulSet's replicas exist and are ready. */
  async function runPods(name: string): Promise<void> {
    const sts = await apps.readNamespacedStatefulSet({ name, namespace: NS });
    const labels = sts.spec!.template.metadata!.labels!;
    for (let i = 0; i < (sts.spec?.replicas ?? 0); i++) {
      const pod = `${name}-${i}`;
      try {
        await core.createNamespacedPod({
          namespace: NS,
          body: { metadata: { name: pod, labels }, spec: { containers: [{ name: 'dynamo', image: 'x' }] } },
        });
      } catch {
        // exists
      }
      const now = new Date().toISOString();
      await core.patchNamespacedPodStatus(
        {
          name: pod,
          namespace: NS,
          body: {
            status: {
              phase: 'Running',
              podIP: `10.0.0.${i + 1}`,
              conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
  }

  it('runs with the chart’s RBAC, which grants no list or watch of Secrets', async () => {
    const authz = cp.kubeConfig.makeApiClient(AuthorizationV1Api);
    const can = async (verb: string, resource: string, group = '') =>
      (
        await authz.createSubjectAccessReview({
          body: {
            spec: { user: operatorUser, resourceAttributes: { namespace: NS, verb, resource, group } },
          },
        })
      ).status?.allowed === true;
    expect(await can('get', 'secrets')).toBe(true);
    expect(await can('patch', 'secrets')).toBe(true);
    expect(await can('list', 'secrets')).toBe(false);
    expect(await can('watch', 'secrets')).toBe(false);
    expect(await can('delete', 'secrets')).toBe(false);
    expect(await can('create', 'certificates', 'cert-manager.io')).toBe(true);
  });

  it('creates the CA, the first node’s certificate and the tokens before the StatefulSet, all valid', async () => {
    await createCluster('demo', { nodes: 3, tokensPerNode: 8, storage: { size: '1Gi' } });
    const cluster = await getCluster('demo');
    expect(cluster.spec).toMatchObject({ tls: { mode: 'operator' }, auth: { enabled: true } });
    await reconciler.reconcile(NS, 'demo');

    const owner = { kind: 'DynamoCluster', name: 'demo', uid: cluster.metadata.uid, controller: true };
    const caSecret = await secret('demo-ca');
    expect(caSecret.type).toBe('kubernetes.io/tls');
    expect(caSecret.metadata?.ownerReferences?.[0]).toMatchObject(owner);
    const ca = filesOf(caSecret);
    const caCert = new X509Certificate(ca['tls.crt']!);
    expect(caCert.ca).toBe(true);
    expect(caCert.checkPrivateKey(createPrivateKey(ca['tls.key']!))).toBe(true);
    expect(certificateValidity(ca['tls.crt']!).notAfter.getTime()).toBeGreaterThan(Date.now() + 3600 * DAY);

    const tlsSecret = await secret('demo-tls');
    expect(tlsSecret.metadata?.ownerReferences?.[0]).toMatchObject(owner);
    const tls = filesOf(tlsSecret);
    expect(Object.keys(tls).sort()).toEqual(['ca.crt', 'demo-0.crt', 'demo-0.key']);
    expect(tls['ca.crt']).toBe(ca['tls.crt']);
    const cert = new X509Certificate(tls['demo-0.crt']!);
    expect(issuedBy(tls['demo-0.crt']!, ca['tls.crt']!)).toBe(true);
    expect(cert.subject).toBe('CN=demo-0');
    expect(cert.checkPrivateKey(createPrivateKey(tls['demo-0.key']!))).toBe(true);
    for (const dns of nodeDnsNames(cluster, 0)) expect(cert.checkHost(dns), dns).toBe(dns);
    expect(cert.checkHost('demo-1.demo-peers.dyn-tls.svc.cluster.local')).toBeUndefined();
    const days = (certificateValidity(tls['demo-0.crt']!).notAfter.getTime() - clock.now.getTime()) / DAY;
    expect(Math.round(days)).toBe(90);

    const authSecret = await secret('demo-auth');
    expect(authSecret.metadata?.ownerReferences?.[0]).toMatchObject(owner);
    const auth = filesOf(authSecret);
    const roles = parseTokens(auth.tokens!, 'tokens');
    expect(roles.size).toBe(4);
    for (const key of ['admin-token', 'write-token', 'read-token', 'operator-token']) {
      expect(auth[key]).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(auth.tokens).toContain(auth[key]);
    }

    const sts = await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS });
    expect(sts.spec?.replicas).toBe(1);
    expect(sts.metadata?.annotations?.['dynamokv.io/tls-mode']).toBe('operator');
    const pod = sts.spec!.template.spec!;
    expect(pod.volumes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'tls', secret: expect.objectContaining({ secretName: 'demo-tls' }) }),
        expect.objectContaining({
          name: 'auth',
          secret: expect.objectContaining({
            secretName: 'demo-auth',
            items: [{ key: 'tokens', path: 'tokens' }],
          }),
        }),
      ]),
    );
    const container = pod.containers[0]!;
    expect(container.volumeMounts).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'tls', mountPath: '/etc/dynamo/tls', readOnly: true }),
        expect.objectContaining({ name: 'auth', mountPath: '/etc/dynamo/auth', readOnly: true }),
      ]),
    );
    const env = new Map((container.env ?? []).map((e) => [e.name, e.value]));
    expect(env.get('DYNAMO_TLS_CERT')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).crt');
    expect(env.get('DYNAMO_TLS_KEY')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).key');
    expect(env.get('DYNAMO_TLS_CA')).toBe('/etc/dynamo/tls/ca.crt');
    expect(env.get('DYNAMO_HTTP_TLS_CERT')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).crt');
    expect(env.get('DYNAMO_HTTP_TLS_KEY')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).key');
    expect(env.get('DYNAMO_AUTH_TOKENS_FILE')).toBe('/etc/dynamo/auth/tokens');
    expect(env.get('DYNAMO_ADVERTISE_HTTP')).toMatch(/^https:\/\//);
    expect(container.readinessProbe?.httpGet?.scheme).toBe('HTTPS');
  });

  it('issues each next node’s certificate before the StatefulSet gets that node, and calls nodes with TLS and its token', async () => {
    for (let i = 0; i < 10; i++) {
      await runPods('demo');
      await reconciler.reconcile(NS, 'demo');
      const replicas =
        (await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS })).spec?.replicas ?? 0;
      const tls = filesOf(await secret('demo-tls'));
      for (let o = 0; o < replicas; o++) expect(tls[`demo-${o}.crt`], `demo-${o}`).toBeDefined();
      if (replicas === 3) break;
    }
    expect((await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS })).spec?.replicas).toBe(3);
    const tls = filesOf(await secret('demo-tls'));
    const ca = filesOf(await secret('demo-ca'))['tls.crt']!;
    for (const pod of ['demo-0', 'demo-1', 'demo-2']) {
      expect(issuedBy(tls[`${pod}.crt`]!, ca), pod).toBe(true);
      expect(new X509Certificate(tls[`${pod}.crt`]!).subject).toBe(`CN=${pod}`);
    }
    const token = filesOf(await secret('demo-auth'))['operator-token'];
    const demoCalls = nodes.calls.filter((c) => c.url.includes('demo-'));
    expect(demoCalls.length).toBeGreaterThan(0);
    for (const call of demoCalls) {
      const ordinal = /demo-([0-9]+)\.test/.exec(call.url)![1];
      expect(call.url).toMatch(/^https:\/\//);
      expect(call.access).toEqual({
        ca,
        serverName: `demo-${ordinal}.demo-peers.${NS}.svc.cluster.local`,
        token,
      });
    }
  });

  it('regenerates nothing when reconciled again', async () => {
    const versions = async () =>
      Promise.all(
        ['demo-ca', 'demo-tls', 'demo-auth'].map(async (n) => (await secret(n)).metadata?.resourceVersion),
      );
    const before = await versions();
    const contents = await Promise.all(
      ['demo-ca', 'demo-tls', 'demo-auth'].map(async (n) => filesOf(await secret(n))),
    );
    for (let i = 0; i < 3; i++) {
      await runPods('demo');
      await reconciler.reconcile(NS, 'demo');
    }
    expect(await versions()).toEqual(before);
    const after = await Promise.all(
      ['demo-ca', 'demo-tls', 'demo-auth'].map(async (n) => filesOf(await secret(n))),
    );
    expect(after).toEqual(contents);
  });

  it('renews expiring node certificates in place, with an Event and status.tls', async () => {
    const before = filesOf(await secret('demo-tls'));
    const caBefore = await secret('demo-ca');
    const authBefore = await secret('demo-auth');
    const template = (await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS })).spec?.template;
    clock.now = new Date(clock.now.getTime() + 61 * DAY);
    await runPods('demo');
    await reconciler.reconcile(NS, 'demo');
    const after = filesOf(await secret('demo-tls'));
    const ca = filesOf(caBefore)['tls.crt']!;
    for (const pod of ['demo-0', 'demo-1', 'demo-2']) {
      expect(after[`${pod}.crt`], pod).not.toBe(before[`${pod}.crt`]);
      expect(issuedBy(after[`${pod}.crt`]!, ca)).toBe(true);
      expect(certificateValidity(after[`${pod}.crt`]!).notAfter.getTime()).toBeGreaterThan(
        clock.now.getTime() + 89 * DAY,
      );
    }
    expect((await secret('demo-ca')).metadata?.resourceVersion).toBe(caBefore.metadata?.resourceVersion);
    expect((await secret('demo-auth')).metadata?.resourceVersion).toBe(authBefore.metadata?.resourceVersion);
    // The pods keep running: the template is the same, the nodes re-read the files.
    expect((await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS })).spec?.template).toEqual(
      template,
    );
    const events = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: 'involvedObject.kind=DynamoCluster,involvedObject.name=demo',
    });
    const renewed = events.items.find((e) => e.reason === 'CertificateRenewed');
    expect(renewed?.message).toMatch(/demo-0 \(expiring\), demo-1 \(expiring\), demo-2 \(expiring\)/);
    const status = (await getCluster('demo')).status?.tls;
    expect(status?.mode).toBe('operator');
    expect(status?.lastRenewal?.nodes).toEqual(['demo-0', 'demo-1', 'demo-2']);
    expect(new Date(status!.lastRenewal!.at).getTime()).toBe(clock.now.getTime());
    expect(new Date(status!.certificatesNotAfter!).getTime()).toBeGreaterThan(clock.now.getTime() + 89 * DAY);
  });

  it('keeps a user’s edit of the tokens Secret', async () => {
    const mine = 'my-own-admin-token-0123456789';
    const tokens = `admin ${mine}\n`;
    await core.patchNamespacedSecret(
      {
        name: 'demo-auth',
        namespace: NS,
        body: { stringData: { tokens, 'admin-token': mine, 'operator-token': mine } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const edited = filesOf(await secret('demo-auth'));
    await runPods('demo');
    await reconciler.reconcile(NS, 'demo');
    expect(filesOf(await secret('demo-auth'))).toEqual(edited);
    expect(edited.tokens).toBe(tokens);
    expect(nodes.calls.at(-1)?.access?.token).toBe(mine);
  });

  it('cert-manager mode: a Certificate per node, no pod before cert-manager issued it, then its files for the pods', async () => {
    await createCluster('cm', {
      nodes: 3,
      tokensPerNode: 8,
      storage: { size: '1Gi' },
      tls: { mode: 'cert-manager', issuerRef: { name: 'ca-issuer', kind: 'ClusterIssuer' } },
    });
    const result = await reconciler.reconcile(NS, 'cm');
    expect(result).toMatchObject({ kind: 'requeue', reason: 'waiting for cert-manager to issue cm-0' });
    const certificate = (await custom.getNamespacedCustomObject({
      group: 'cert-manager.io',
      version: 'v1',
      plural: 'certificates',
      namespace: NS,
      name: 'cm-0-tls',
    })) as { spec: Record<string, unknown>; metadata: { ownerReferences?: Array<{ kind: string }> } };
    expect(certificate.spec).toMatchObject({
      secretName: 'cm-0-tls',
      commonName: 'cm-0',
      duration: '2160h',
      renewBefore: '720h',
      issuerRef: { name: 'ca-issuer', kind: 'ClusterIssuer', group: 'cert-manager.io' },
    });
    expect(certificate.metadata.ownerReferences?.[0]?.kind).toBe('DynamoCluster');
    await expect(apps.readNamespacedStatefulSet({ name: 'cm', namespace: NS })).rejects.toThrow();
    await expect(secret('cm-ca')).rejects.toThrow();

    // What cert-manager would write for it.
    const issuer = createCa('issuer', 365);
    const spec = certificate.spec as { commonName: string; dnsNames: string[] };
    const pair = issueCertificate(issuer, { commonName: spec.commonName, dnsNames: spec.dnsNames, days: 90 });
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: 'cm-0-tls' },
        type: 'kubernetes.io/tls',
        stringData: { 'tls.crt': pair.cert, 'tls.key': pair.key, 'ca.crt': issuer.cert },
      },
    });
    await reconciler.reconcile(NS, 'cm');
    const tls = filesOf(await secret('cm-tls'));
    expect(tls['cm-0.crt']).toBe(pair.cert);
    expect(tls['cm-0.key']).toBe(pair.key);
    expect(tls['ca.crt']?.trim()).toBe(issuer.cert.trim());
    const sts = await apps.readNamespacedStatefulSet({ name: 'cm', namespace: NS });
    expect(sts.spec?.replicas).toBe(1);
    expect(sts.metadata?.annotations?.['dynamokv.io/tls-mode']).toBe('cert-manager');
    expect((await getCluster('cm')).status?.tls?.mode).toBe('cert-manager');
  });
});
