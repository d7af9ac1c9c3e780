/**
 * Smoke test of the control plane the operator tests run against: real etcd, kube-apiserver and
 * kube-controller-manager on loopback. The first run on a machine builds the Kubernetes binaries with Go
 * (hack/k8s-control-plane.sh; CI does it before the tests), which takes many minutes on 2 cores: hence
 * the 45-minute hook timeout. Once built, this file takes well under a minute.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiException, AppsV1Api, CoreV1Api, type V1StatefulSet } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../integration/harness.js';
import { type ControlPlane, startControlPlane } from './control-plane.js';

const BUILD_TIMEOUT_MS = 45 * 60_000;
const CONTROLLER_TIMEOUT_MS = 30_000;

describe('control plane for operator tests', () => {
  let cp: ControlPlane;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  const namespace = 'smoke';

  // Long enough for the first build of the binaries; startControlPlane bounds each process's startup itself.
  beforeAll(async () => {
    cp = await startControlPlane({ controllerManager: true });
    core = cp.kubeConfig.makeApiClient(CoreV1Api);
    apps = cp.kubeConfig.makeApiClient(AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  /** A StatefulSet of 2 pods that start together (no waiting for a pod that never becomes ready). */
  async function createStatefulSet(name: string): Promise<V1StatefulSet> {
    const labels = { app: name };
    return apps.createNamespacedStatefulSet({
      namespace,
      body: {
        metadata: { name },
        spec: {
          replicas: 2,
          serviceName: name,
          podManagementPolicy: 'Parallel',
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            // Never pulled: without a kubelet, pods are only API objects.
            spec: { containers: [{ name: 'main', image: 'registry.invalid/none:1' }] },
          },
        },
      },
    });
  }

  async function podNames(app: string): Promise<string[]> {
    const pods = await core.listNamespacedPod({ namespace, labelSelector: `app=${app}` });
    return pods.items.map((p) => p.metadata!.name!).sort();
  }

  async function configMapExists(name: string): Promise<boolean> {
    try {
      await core.readNamespacedConfigMap({ name, namespace });
      return true;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return false;
      throw err;
    }
  }

  it('serves the API to the admin in its kubeconfig', async () => {
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'settings' }, data: { greeting: 'hello' } },
    });
    const read = await core.readNamespacedConfigMap({ name: 'settings', namespace });
    expect(read.data).toEqual({ greeting: 'hello' });
  });

  it('lets kubectl validate objects with a server-side dry run', async () => {
    const kubectl = join(cp.assets, 'kubectl');
    const args = ['--kubeconfig', cp.kubeconfigPath, '-n', namespace, 'create', 'configmap', 'dry'];
    const { stdout } = await promisify(execFile)(kubectl, [
      ...args,
      '--from-literal=a=b',
      '--dry-run=server',
      '-o',
      'name',
    ]);
    expect(stdout.trim()).toBe('configmap/dry');
    expect(await configMapExists('dry')).toBe(false);
  });

  it('runs the StatefulSet controller, which creates the pods (Pending: there is no scheduler)', async () => {
    await createStatefulSet('web');
    await waitFor(
      'pods web-0 and web-1',
      async () => (await podNames('web')).join() === 'web-0,web-1',
      CONTROLLER_TIMEOUT_MS,
    );
    const pod = await core.readNamespacedPod({ name: 'web-0', namespace });
    expect(pod.status?.phase).toBe('Pending');
    expect(pod.spec?.nodeName).toBeUndefined();
  });

  it('runs the garbage collector, which deletes what a background-deleted StatefulSet owned', async () => {
    const sts = await createStatefulSet('doomed');
    const owner = { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'doomed', uid: sts.metadata!.uid! };
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'doomed-tokens', ownerReferences: [{ ...owner, controller: true }] } },
    });
    await waitFor(
      'pods of doomed',
      async () => (await podNames('doomed')).length === 2,
      CONTROLLER_TIMEOUT_MS,
    );

    await apps.deleteNamespacedStatefulSet({ name: 'doomed', namespace, propagationPolicy: 'Background' });

    await waitFor(
      'pods of doomed deleted',
      async () => (await podNames('doomed')).length === 0,
      CONTROLLER_TIMEOUT_MS,
    );
    await waitFor(
      'doomed-tokens deleted',
      async () => !(await configMapExists('doomed-tokens')),
      CONTROLLER_TIMEOUT_MS,
    );
    expect(await configMapExists('settings')).toBe(true);
  });
});
