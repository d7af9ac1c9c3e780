/** What the operator tests against a real kube-apiserver share: the CRD installed, and node APIs that answer. */
import { readFileSync } from 'node:fs';
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  loadYaml,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import type { NodeAdmin, RingView } from '../../operator/src/node-admin.js';
import type { NodeStatus } from '../../operator/src/scaling.js';
import { waitFor } from '../integration/harness.js';

export const CRD = new URL('../../crds/dynamokv.io_dynamoclusters.yaml', import.meta.url);
export const GROUP = { group: 'dynamokv.io', version: 'v1alpha1', plural: 'dynamoclusters' };

/** Waits until DynamoClusters can be listed in namespace: the CRD is served. */
export async function waitForCrdServed(kubeConfig: KubeConfig, namespace: string): Promise<void> {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  await waitFor(
    'the CRD to be served',
    async () => {
      await custom.listNamespacedCustomObject({ ...GROUP, namespace });
      return true;
    },
    30_000,
  );
}

/** Creates the CRD from crds/ and waits until it is served in namespace. */
export async function installCrd(kubeConfig: KubeConfig, namespace: string): Promise<void> {
  const ext = kubeConfig.makeApiClient(ApiextensionsV1Api);
  await ext.createCustomResourceDefinition({
    body: loadYaml<V1CustomResourceDefinition>(readFileSync(CRD, 'utf8')),
  });
  await waitForCrdServed(kubeConfig, namespace);
}

/** Node admin APIs that answer; no pod becomes ready in these tests, so the reconciler hardly calls them. */
export class QuietNodes implements NodeAdmin {
  async decommission(): Promise<NodeStatus> {
    return { state: 'left', stream: null };
  }
  async status(): Promise<NodeStatus> {
    return { state: 'up', stream: null };
  }
  async ring(): Promise<RingView> {
    return { members: [] };
  }
  async storageBytes(): Promise<number | undefined> {
    return 0;
  }
}
