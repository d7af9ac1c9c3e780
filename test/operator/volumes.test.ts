/**
 * What the operator tells users about nodes whose volume is not theirs, against a real kube-apiserver (with
 * kube-controller-manager: the StatefulSet controller makes the pods, the garbage collector cascades deletes).
 * There is no kubelet: the test writes a node pod's status as the kubelet would for a container that keeps
 * exiting with a termination message (a new cluster meeting an old volume: token_mismatch), and the reconciler
 * must say so in the Degraded condition and a Warning event, naming the pod and the node's reason. Deleting a
 * cluster with volumesOnDelete: Delete deletes its claims after its StatefulSet and pods (a finalizer holds the
 * cluster until then); by default the claims stay, and a cluster created again with the name warns of them.
 */
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoCluster } from '../../operator/src/api-types.js';
import { ClientNodeKubeApi } from '../../operator/src/kube.js';
import { Reconciler } from '../../operator/src/reconcile.js';
import { waitFor } from '../integration/harness.js';
import { type ControlPlane, startControlPlane } from './control-plane.js';
import { GROUP, installCrd, QuietNodes } from './fixtures.js';

const BUILD_TIMEOUT_MS = 45 * 60_000;
const NS = 'dyn-volumes';
// Small and plain: no certificates to issue, one node.
const SPEC = {
  nodes: 1,
  tokensPerNode: 8,
  replication: { n: 1, r: 1, w: 1 },
  storage: { size: '1Gi' },
  tls: { mode: 'disabled' },
};

describe('volumes that are not the nodes’ own, on a real API server', () => {
  let cp: ControlPlane;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let reconciler: Reconciler;

  beforeAll(async () => {
    cp = await startControlPlane({ controllerManager: true });
    custom = cp.kubeConfig.makeApiClient(CustomObjectsApi);
    core = cp.kubeConfig.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await installCrd(cp.kubeConfig, NS);
    reconciler = new Reconciler({
      kube: new ClientNodeKubeApi(cp.kubeConfig, 'volumes-test'),
      nodes: new QuietNodes(),
      log: pino({ level: process.env.DYNAMO_TEST_LOG ?? 'silent' }),
      nodeUrl: (cluster, ordinal, _ip, scheme) => `${scheme}://${cluster.metadata.name}-${ordinal}.test:8080`,
    });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  const create = (name: string, spec: Record<string, unknown>) =>
    custom.createNamespacedCustomObject({
      ...GROUP,
      namespace: NS,
      body: { apiVersion: 'dynamokv.io/v1alpha1', kind: 'DynamoCluster', metadata: { name }, spec },
      fieldValidation: 'Strict',
    });
  const getCluster = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...GROUP, namespace: NS, name })) as DynamoCluster;
  const events = async (name: string) =>
    (
      await core.listNamespacedEvent({
        namespace: NS,
        fieldSelector: `involvedObject.kind=DynamoCluster,involvedObject.name=${name}`,
      })
    ).items;
  const podExists = (name: string) => async () =>
    Boolean(await core.readNamespacedPod({ name, namespace: NS }).catch(() => undefined));

  it('reports a node pod that keeps failing with its own reason as Degraded, with a Warning event', async () => {
    await create('renewed', SPEC);
    await reconciler.reconcile(NS, 'renewed');
    await waitFor('pod renewed-0', podExists('renewed-0'), 30_000);
    // What the kubelet reports of a container that exits with a termination message, again and again.
    const message =
      "token_mismatch: node renewed-0's data directory (/var/lib/dynamo) holds the 256 tokens it claimed before, but --initial-tokens assigns it 8 tokens, 8 of them not among those";
    const now = new Date().toISOString();
    await core.patchNamespacedPodStatus(
      {
        name: 'renewed-0',
        namespace: NS,
        body: {
          status: {
            phase: 'Running',
            conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: now }],
            containerStatuses: [
              {
                name: 'dynamo',
                image: 'dynamo-kv:0.1.0',
                imageID: '',
                ready: false,
                restartCount: 5,
                state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 2m40s' } },
                lastState: { terminated: { exitCode: 2, reason: 'Error', message, finishedAt: now } },
              },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await reconciler.reconcile(NS, 'renewed');
    const status = (await getCluster('renewed')).status;
    expect(status?.phase).toBe('Degraded');
    expect(status?.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'TokenMismatch',
      message: `renewed-0 cannot start (restarted 5 times): ${message}`,
    });
    const warnings = (await events('renewed')).filter((e) => e.reason === 'TokenMismatch');
    expect(warnings.map((e) => [e.type, e.message])).toEqual([
      ['Warning', `renewed-0 cannot start: ${message}`],
    ]);
  }, 90_000);

  const claimOf = (name: string) =>
    core.readNamespacedPersistentVolumeClaim({ name, namespace: NS }).catch(() => undefined);
  const clusterGone = (name: string) => async () =>
    (await custom.getNamespacedCustomObject({ ...GROUP, namespace: NS, name }).catch(() => undefined)) ===
    undefined;
  /** A claim like those the StatefulSet makes, e.g. one a scale-down retained. */
  const makeClaim = (name: string, cluster: string) =>
    core.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name, labels: { 'dynamokv.io/cluster': cluster } },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      },
    });
  const deleteCluster = (name: string) =>
    custom.deleteNamespacedCustomObject({ ...GROUP, namespace: NS, name });

  it('with volumesOnDelete: Delete, deletes every claim of the cluster once its StatefulSet and pods are gone', async () => {
    await create('gone', { ...SPEC, storage: { size: '1Gi', volumesOnDelete: 'Delete' } });
    await reconciler.reconcile(NS, 'gone');
    expect((await getCluster('gone')).metadata.finalizers).toEqual(['dynamokv.io/delete-volumes']);
    await waitFor('claim data-gone-0', async () => (await claimOf('data-gone-0')) !== undefined, 30_000);
    await makeClaim('data-gone-4', 'gone');
    await makeClaim('data-other-0', 'other');

    await deleteCluster('gone');
    // Held by the finalizer until the operator is done.
    expect((await getCluster('gone')).metadata.deletionTimestamp).toBeDefined();
    await waitFor(
      'the cluster to go',
      async () => {
        await reconciler.reconcile(NS, 'gone');
        return await clusterGone('gone')();
      },
      60_000,
    );
    const apps = cp.kubeConfig.makeApiClient(AppsV1Api);
    expect(
      await apps.readNamespacedStatefulSet({ name: 'gone', namespace: NS }).catch(() => undefined),
    ).toBeUndefined();
    // Deleted (or held only by the pvc-protection finalizer, whose controller this control plane does not run).
    for (const name of ['data-gone-0', 'data-gone-4']) {
      const claim = await claimOf(name);
      expect(claim === undefined || claim.metadata?.deletionTimestamp !== undefined, name).toBe(true);
    }
    expect((await claimOf('data-other-0'))?.metadata?.deletionTimestamp).toBeUndefined();
    expect((await events('gone')).map((e) => e.reason)).toContain('VolumesDeleted');
  }, 120_000);

  it('keeps the claims by default, and a cluster created again with the name says it found them', async () => {
    await create('kept', SPEC);
    await reconciler.reconcile(NS, 'kept');
    expect((await getCluster('kept')).metadata.finalizers ?? []).toEqual([]);
    await waitFor('claim data-kept-0', async () => (await claimOf('data-kept-0')) !== undefined, 30_000);
    await deleteCluster('kept');
    await waitFor('the cluster to go', clusterGone('kept'), 30_000);
    // Nothing of the operator's waits on it: the reconcile of a deleted cluster does nothing.
    expect(await reconciler.reconcile(NS, 'kept')).toMatchObject({ kind: 'done', reason: 'cluster deleted' });
    expect((await claimOf('data-kept-0'))?.metadata?.deletionTimestamp).toBeUndefined();

    // Created again (the garbage collector may not even have deleted the old StatefulSet yet).
    await create('kept', SPEC);
    await reconciler.reconcile(NS, 'kept');
    const found = (await events('kept')).filter((e) => e.reason === 'VolumesFound');
    expect(found.map((e) => [e.type, e.message?.split(' already exist')[0]])).toEqual([
      ['Warning', 'data-kept-0'],
    ]);
  }, 120_000);
});
