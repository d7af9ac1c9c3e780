/**
 * The operator against a real kube-apiserver (and kube-controller-manager for StatefulSet pods): the CRD installs
 * and rejects invalid clusters with the server's own messages; the operator, run in-process, creates the owned
 * objects, reports status and Events, holds a Lease, scales up one node at a time and decommissions a node
 * before the StatefulSet drops it. There is no kubelet: this test marks pods ready itself, and the nodes' admin
 * API is a fake on loopback that the operator reaches through its overridable node URL.
 */

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  ApiException,
  ApiextensionsV1Api,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  loadYaml,
  NetworkingV1Api,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoCluster } from '../../operator/src/api-types.js';
import { type RunningOperator, startOperator } from '../../operator/src/controller.js';
import { parseAssignments } from '../../operator/src/token-assignments.js';
import { waitFor } from '../integration/harness.js';
import { type ControlPlane, startControlPlane } from './control-plane.js';

const BUILD_TIMEOUT_MS = 45 * 60_000;
const CRD = new URL('../../crds/dynamokv.io_dynamoclusters.yaml', import.meta.url);
const NS = 'dyn-test';
const GROUP = { group: 'dynamokv.io', version: 'v1alpha1', plural: 'dynamoclusters' };

/** Fake node admin APIs, one per pod name, under http://127.0.0.1:<port>/<pod>. */
class FakeNodes {
  server: Server = createServer((req, res) => this.handle(req.url ?? '', req.method ?? 'GET', res));
  /** Decommission calls per node. */
  decommissionCalls = new Map<string, number>();
  /** Calls after which a leaving node reports 'left'. */
  callsToLeave = 3;
  left = new Set<string>();

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  private handle(url: string, method: string, res: ServerResponse): void {
    const [, node, ...rest] = url.split('?')[0]!.split('/');
    const path = `/${rest.join('/')}`;
    const json = (body: unknown): void => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (path === '/admin/ring') {
      json({ cluster: 'demo', self: node, n: 2, members: [] });
      return;
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('dynamo_storage_bytes 1024\n');
      return;
    }
    if (path === '/admin/decommission' && method === 'POST' && node) {
      const calls = (this.decommissionCalls.get(node) ?? 0) + 1;
      this.decommissionCalls.set(node, calls);
      if (calls >= this.callsToLeave) this.left.add(node);
      json({
        id: node,
        cluster: 'demo',
        state: this.left.has(node) ? 'left' : 'leaving',
        stream: { kind: 'decommission', rangesTotal: 4, rangesPending: this.left.has(node) ? 0 : 4 - calls },
      });
      return;
    }
    res.writeHead(404).end();
  }
}

describe('DynamoCluster operator against a real API server', () => {
  let cp: ControlPlane;
  let operator: RunningOperator | undefined;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let markReady: NodeJS.Timeout | undefined;
  const nodes = new FakeNodes();

  beforeAll(async () => {
    cp = await startControlPlane({ controllerManager: true });
    custom = cp.kubeConfig.makeApiClient(CustomObjectsApi);
    core = cp.kubeConfig.makeApiClient(CoreV1Api);
    apps = cp.kubeConfig.makeApiClient(AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await new Promise<void>((resolve) => nodes.server.listen(0, '127.0.0.1', resolve));
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    if (markReady) clearInterval(markReady);
    await operator?.stop();
    nodes.server.close();
    await cp?.stop();
  }, 60_000);

  const getCluster = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...GROUP, namespace: NS, name })) as DynamoCluster;

  const create = (body: unknown) =>
    custom.createNamespacedCustomObject({ ...GROUP, namespace: NS, body, fieldValidation: 'Strict' });

  /** The API server's message for a rejected create. */
  async function rejection(spec: Record<string, unknown>): Promise<string> {
    try {
      await create({
        apiVersion: 'dynamokv.io/v1alpha1',
        kind: 'DynamoCluster',
        metadata: { name: 'bad' },
        spec,
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ApiException);
      const e = err as ApiException<unknown>;
      expect([400, 422]).toContain(e.code);
      const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      return String((body as { message?: string }).message);
    }
    throw new Error('the API server accepted an invalid DynamoCluster');
  }

  it('installs the CRD from crds/', async () => {
    const ext = cp.kubeConfig.makeApiClient(ApiextensionsV1Api);
    const crd = loadYaml<V1CustomResourceDefinition>(readFileSync(CRD, 'utf8'));
    await ext.createCustomResourceDefinition({ body: crd });
    await waitFor(
      'the CRD to be established',
      async () => {
        const stored = await ext.readCustomResourceDefinition({ name: 'dynamoclusters.dynamokv.io' });
        return (stored.status?.conditions ?? []).some((c) => c.type === 'Established' && c.status === 'True');
      },
      30_000,
    );
  });

  it('rejects invalid clusters with the schema and CEL messages', async () => {
    expect(await rejection({ nodes: 3, replication: { n: 3, r: 4, w: 2 } })).toMatch(
      /replication.r must not exceed replication.n/,
    );
    expect(await rejection({ nodes: 3, replication: { n: 3, r: 2, w: 5 } })).toMatch(
      /replication.w must not exceed replication.n/,
    );
    expect(await rejection({ nodes: 2, replication: { n: 3 } })).toMatch(
      /nodes must be at least replication.n/,
    );
    expect(await rejection({ storage: { size: '-1Gi' } })).toMatch(/spec.storage.size/);
    expect(await rejection({ storage: { size: '0' } })).toMatch(/storage.size must be positive/);
    expect(await rejection({ nodes: -1 })).toMatch(/spec.nodes/);
    // A malformed quantity is refused here, not by the StatefulSet apply later (retried for ever).
    expect(await rejection({ resources: { limits: { memory: 'lots' } } })).toMatch(
      /spec.resources.limits.memory/,
    );
    expect(await rejection({ resources: { requests: { cpu: '1 core' } } })).toMatch(
      /spec.resources.requests.cpu/,
    );
    expect(await rejection({ nodes: 3, replicas: 3 })).toMatch(/unknown field "spec.replicas"/);
  });

  /** kubectl's output (stdout, or stderr when it fails): it parses YAML as Go does, unlike the JS client. */
  async function kubectl(...args: string[]): Promise<{ ok: boolean; out: string }> {
    try {
      const { stdout } = await promisify(execFile)(
        join(cp.assets, 'kubectl'),
        ['--kubeconfig', cp.kubeconfigPath, ...args],
        {
          cwd: new URL('../..', import.meta.url).pathname,
        },
      );
      return { ok: true, out: stdout };
    } catch (err) {
      return { ok: false, out: String((err as { stderr?: string }).stderr ?? err) };
    }
  }

  it('takes the CRD and the examples through kubectl', async () => {
    const crd = await kubectl(
      'apply',
      '--server-side',
      '--dry-run=server',
      '-f',
      'crds/dynamokv.io_dynamoclusters.yaml',
    );
    expect(crd.out).toMatch(/serverside-applied/);
    const example = await kubectl('apply', '--dry-run=server', '-n', NS, '-f', 'examples/cluster.yaml');
    expect(example.out).toMatch(/dynamocluster.dynamokv.io\/demo created \(server dry run\)/);
    const invalid = await kubectl(
      'apply',
      '--dry-run=server',
      '-n',
      NS,
      '-f',
      'examples/cluster-invalid.yaml',
    );
    expect(invalid.ok).toBe(false);
    expect(invalid.out).toMatch(/replication.r must not exceed replication.n/);
    expect(invalid.out).toMatch(/nodes must be at least replication.n/);
    expect(invalid.out).toMatch(/spec.storage.size/);
  });

  it('fills defaults on a minimal cluster', async () => {
    await create({
      apiVersion: 'dynamokv.io/v1alpha1',
      kind: 'DynamoCluster',
      metadata: { name: 'defaults' },
      spec: {},
    });
    const stored = await getCluster('defaults');
    expect(stored.spec).toMatchObject({
      nodes: 3,
      tokensPerNode: 256,
      replication: { n: 3, r: 2, w: 2 },
      seeds: 3,
      storage: { size: '10Gi', retainOnScaleDown: false },
    });
    await custom.deleteNamespacedCustomObject({ ...GROUP, namespace: NS, name: 'defaults' });
  });

  it('creates the owned objects, status and Events for a new cluster, under a Lease', async () => {
    operator = await startOperator({
      kubeConfig: cp.kubeConfig,
      log: pino({ level: process.env.DYNAMO_TEST_LOG ?? 'silent' }),
      leaderElection: {
        namespace: NS,
        name: 'dynamo-operator',
        identity: 'test-operator',
        leaseDurationSeconds: 10,
      },
      nodeUrl: (cluster, ordinal) => `http://127.0.0.1:${nodes.port}/${cluster.metadata.name}-${ordinal}`,
      resyncMs: 2_000,
    });
    await create({
      apiVersion: 'dynamokv.io/v1alpha1',
      kind: 'DynamoCluster',
      metadata: { name: 'demo' },
      spec: { nodes: 3, tokensPerNode: 8, replication: { n: 2, r: 1, w: 1 }, storage: { size: '1Gi' } },
    });
    const cluster = await getCluster('demo');

    await waitFor(
      'the StatefulSet',
      async () => Boolean(await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS })),
      30_000,
    );
    const sts = await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS });
    // One node at a time: the first node alone until it is ready.
    expect(sts.spec?.replicas).toBe(1);
    expect(sts.spec?.podManagementPolicy).toBe('OrderedReady');
    expect(sts.spec?.serviceName).toBe('demo-peers');
    expect(
      sts.metadata?.managedFields?.some((f) => f.manager === 'dynamo-operator' && f.operation === 'Apply'),
    ).toBe(true);
    const owner = {
      apiVersion: 'dynamokv.io/v1alpha1',
      kind: 'DynamoCluster',
      name: 'demo',
      uid: cluster.metadata.uid,
      controller: true,
    };
    const peers = await core.readNamespacedService({ name: 'demo-peers', namespace: NS });
    const client = await core.readNamespacedService({ name: 'demo', namespace: NS });
    const tokens = await core.readNamespacedConfigMap({ name: 'demo-tokens', namespace: NS });
    const pdb = await cp.kubeConfig
      .makeApiClient(PolicyV1Api)
      .readNamespacedPodDisruptionBudget({ name: 'demo', namespace: NS });
    const policy = await cp.kubeConfig
      .makeApiClient(NetworkingV1Api)
      .readNamespacedNetworkPolicy({ name: 'demo-peers-only', namespace: NS });
    const secret = await core.readNamespacedSecret({ name: 'demo-context-secret', namespace: NS });
    for (const object of [sts, peers, client, tokens, pdb, policy, secret]) {
      expect(object.metadata?.ownerReferences?.[0]).toMatchObject(owner);
    }
    // The peer port admits only this cluster's pods; the HTTP port stays open to clients.
    expect(policy.spec?.ingress).toEqual([
      {
        _from: [{ podSelector: { matchLabels: policy.spec?.podSelector?.matchLabels } }],
        ports: [{ protocol: 'TCP', port: 7070 }],
      },
      { ports: [{ protocol: 'TCP', port: 8080 }] },
    ]);
    expect(policy.spec?.podSelector?.matchLabels).toMatchObject({ 'dynamokv.io/cluster': 'demo' });
    expect(Buffer.from(secret.data?.['context-secret'] ?? '', 'base64').toString()).toMatch(/^[0-9a-f]{64}$/);
    expect(peers.spec?.clusterIP).toBe('None');
    expect(peers.spec?.publishNotReadyAddresses).toBe(true);
    expect(client.spec?.ports?.[0]).toMatchObject({ name: 'http', port: 8080 });
    expect(String(pdb.spec?.maxUnavailable)).toBe('1');
    expect([...parseAssignments(tokens.data).keys()]).toEqual(['demo-0']);
    expect(parseAssignments(tokens.data).get('demo-0')).toHaveLength(8);

    await waitFor(
      'status with observedGeneration and conditions',
      async () => {
        const status = (await getCluster('demo')).status;
        return status?.observedGeneration === 1 && (status.conditions ?? []).length === 5;
      },
      30_000,
    );
    const status = (await getCluster('demo')).status;
    expect(status?.phase).toBe('Creating');
    expect(status?.conditions?.find((c) => c.type === 'Valid')?.status).toBe('True');
    expect(status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('False');

    const events = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: 'involvedObject.kind=DynamoCluster,involvedObject.name=demo',
    });
    const reasons = events.items.map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['Created', 'TokensAssigned', 'ScalingUp']));
    expect(events.items.every((e) => e.source?.component === 'dynamo-operator')).toBe(true);

    const lease = await cp.kubeConfig
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: 'dynamo-operator', namespace: NS });
    expect(lease.spec?.holderIdentity).toBe('test-operator');
  });

  /** Plays the kubelet: every pod of the cluster is reported running and ready, with a loopback IP. */
  function keepPodsReady(): void {
    markReady = setInterval(async () => {
      try {
        const pods = await core.listNamespacedPod({
          namespace: NS,
          labelSelector: 'dynamokv.io/cluster=demo',
        });
        for (const pod of pods.items) {
          if (pod.metadata?.deletionTimestamp) continue;
          if ((pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')) continue;
          const now = new Date().toISOString();
          await core.patchNamespacedPodStatus(
            {
              name: pod.metadata!.name!,
              namespace: NS,
              body: {
                status: {
                  phase: 'Running',
                  podIP: '127.0.0.1',
                  conditions: [
                    { type: 'Ready', status: 'True', lastTransitionTime: now },
                    { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
                  ],
                },
              },
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
        }
      } catch {
        // next tick
      }
    }, 300);
  }

  it('adds nodes one at a time until the ring is ready', async () => {
    keepPodsReady();
    await waitFor(
      'a ready 3-node cluster',
      async () => {
        const status = (await getCluster('demo')).status;
        return status?.phase === 'Ready' && status.readyNodes === 3;
      },
      90_000,
    );
    const sts = await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS });
    expect(sts.spec?.replicas).toBe(3);
    const tokens = parseAssignments(
      (await core.readNamespacedConfigMap({ name: 'demo-tokens', namespace: NS })).data,
    );
    expect([...tokens.keys()].sort()).toEqual(['demo-0', 'demo-1', 'demo-2']);
    const status = (await getCluster('demo')).status;
    expect(status?.members?.map((m) => [m.name, m.tokens])).toEqual([
      ['demo-0', 8],
      ['demo-1', 8],
      ['demo-2', 8],
    ]);
  }, 120_000);

  it('decommissions the highest ordinal and shrinks the StatefulSet only after it has left', async () => {
    const before = parseAssignments(
      (await core.readNamespacedConfigMap({ name: 'demo-tokens', namespace: NS })).data,
    );
    await custom.patchNamespacedCustomObject(
      { ...GROUP, namespace: NS, name: 'demo', body: { spec: { nodes: 2 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await waitFor(
      'the first decommission request',
      async () => (nodes.decommissionCalls.get('demo-2') ?? 0) >= 1,
      30_000,
    );
    // Leaving, not left: the StatefulSet keeps the node and the intent is in status.
    expect((await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS })).spec?.replicas).toBe(3);
    const during = (await getCluster('demo')).status;
    expect(during?.decommissioning).toMatchObject({ node: 'demo-2', ordinal: 2 });

    await waitFor(
      'the StatefulSet to drop demo-2',
      async () =>
        (await apps.readNamespacedStatefulSet({ name: 'demo', namespace: NS })).spec?.replicas === 2,
      60_000,
    );
    expect(nodes.decommissionCalls.get('demo-2')).toBeGreaterThanOrEqual(nodes.callsToLeave);
    expect(nodes.decommissionCalls.has('demo-1')).toBe(false);

    await waitFor(
      'the decommission to finish',
      async () => {
        const status = (await getCluster('demo')).status;
        return !status?.decommissioning && status?.phase === 'Ready' && status.nodes === 2;
      },
      60_000,
    );
    const after = parseAssignments(
      (await core.readNamespacedConfigMap({ name: 'demo-tokens', namespace: NS })).data,
    );
    expect([...after.keys()].sort()).toEqual(['demo-0', 'demo-1']);
    expect(after.get('demo-0')).toEqual(before.get('demo-0'));
    expect(after.get('demo-1')).toEqual(before.get('demo-1'));
    // Deleted (or held only by the pvc-protection finalizer, whose controller this control plane does not run).
    const claim = await core
      .readNamespacedPersistentVolumeClaim({ name: 'data-demo-2', namespace: NS })
      .catch((err: unknown) =>
        err instanceof ApiException && err.code === 404 ? undefined : Promise.reject(err),
      );
    expect(claim === undefined || claim.metadata?.deletionTimestamp !== undefined).toBe(true);

    const events = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: 'involvedObject.kind=DynamoCluster,involvedObject.name=demo',
    });
    expect(events.items.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['DecommissionStarted', 'NodeLeft', 'Decommissioned']),
    );
  }, 150_000);
});
