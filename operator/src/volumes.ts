// What deleting a DynamoCluster does to its nodes' volumes: spec.storage.volumesOnDelete.
//  - Retain (the default): nothing. The garbage collector deletes what the cluster owns (the StatefulSet, its
//    pods, Services, ConfigMaps, Secrets); the claims data-<cluster>-<n> stay, as a StatefulSet's always do.
//  - Delete: the cluster carries VOLUMES_FINALIZER from its first reconcile, so a delete leaves it in place (with a
//    deletionTimestamp) until the operator has deleted the StatefulSet, seen every pod of the cluster gone (no node
//    uses a volume any more), and deleted every claim data-<cluster>-<n> labelled with the cluster, those a
//    scale-down retained included. Only then does the finalizer go, and the garbage collector does the rest.
// Changing the policy back to Retain removes the finalizer at the next reconcile, or during the deletion itself.
// What Retain leaves behind meets a cluster created again with the same name: its first reconcile says so.
import type { V1StatefulSet } from '@kubernetes/client-node';
import type { DynamoCluster, VolumesOnDelete } from './api-types.js';
import type { EventRecord, KubeApi, ObjectRef } from './kube.js';
import { LABEL_CLUSTER, ordinalOf, statefulSetName, VOLUME_CLAIM } from './names.js';

export const VOLUMES_FINALIZER = 'dynamokv.io/delete-volumes';
const WAIT_MS = 2_000;

export interface DeletionDeps {
  kube: KubeApi;
  event: (cluster: DynamoCluster, event: EventRecord) => Promise<void>;
}

/** Still deleting: look again after waitMs. */
export interface DeletionWait {
  waitMs: number;
  reason: string;
}

/** The claims the StatefulSet made for this cluster's nodes: data-<cluster>-<ordinal>. */
export function isNodeClaim(cluster: string, claim: string): boolean {
  const prefix = `${VOLUME_CLAIM}-`;
  return claim.startsWith(prefix) && ordinalOf(cluster, claim.slice(prefix.length)) !== undefined;
}

export class ClusterVolumes {
  constructor(private readonly deps: DeletionDeps) {}

  /** The finalizer as the policy wants it: on the cluster with Delete, off with Retain. Returns the stored cluster. */
  async ensureFinalizer(cluster: DynamoCluster, policy: VolumesOnDelete): Promise<DynamoCluster> {
    const has = (cluster.metadata.finalizers ?? []).includes(VOLUMES_FINALIZER);
    if (has === (policy === 'Delete')) return cluster;
    return await this.setFinalizer(cluster, policy === 'Delete');
  }

  /**
   * One pass over a cluster being deleted: undefined once nothing is left to do (the finalizer, if it was there,
   * is gone), else what it waits for.
   */
  async finalize(cluster: DynamoCluster, policy: VolumesOnDelete): Promise<DeletionWait | undefined> {
    if (!(cluster.metadata.finalizers ?? []).includes(VOLUMES_FINALIZER)) return undefined;
    if (policy !== 'Delete') {
      await this.setFinalizer(cluster, false);
      return undefined;
    }
    const { kube } = this.deps;
    const { namespace, name } = cluster.metadata;
    const sts: ObjectRef = {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      namespace,
      name: statefulSetName(name),
    };
    const statefulSet = await kube.read<V1StatefulSet>(sts);
    if (statefulSet !== undefined) {
      if (!statefulSet.metadata?.deletionTimestamp) await kube.remove(sts);
      return { waitMs: WAIT_MS, reason: `waiting for StatefulSet ${sts.name} to be deleted` };
    }
    const pods = await kube.listPods(namespace, `${LABEL_CLUSTER}=${name}`);
    if (pods.length > 0) {
      const names = pods.map((p) => p.metadata?.name).join(', ');
      return {
        waitMs: WAIT_MS,
        reason: `waiting for pods ${names} to terminate before deleting their volumes`,
      };
    }
    const claims = (await kube.listClaims(namespace, `${LABEL_CLUSTER}=${name}`))
      .map((c) => ({ claim: c.metadata?.name ?? '', deleting: Boolean(c.metadata?.deletionTimestamp) }))
      .filter(({ claim }) => isNodeClaim(name, claim));
    const deleted: string[] = [];
    for (const { claim, deleting } of claims) {
      if (deleting) continue;
      const pvc: ObjectRef = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace, name: claim };
      if (await kube.remove(pvc)) deleted.push(claim);
    }
    if (deleted.length > 0) {
      await this.deps.event(cluster, {
        type: 'Normal',
        reason: 'VolumesDeleted',
        message: `deleted ${deleted.sort(byOrdinal).join(', ')} (volumesOnDelete: Delete)`,
      });
    }
    await this.setFinalizer(cluster, false);
    return undefined;
  }

  /**
   * Claims of this cluster's nodes that exist before it has made any (an earlier cluster of the same name kept
   * them): a Warning, since its nodes will start on that data and refuse it unless it holds their new tokens.
   */
  async reportLeftovers(cluster: DynamoCluster): Promise<void> {
    const { namespace, name } = cluster.metadata;
    const claims = (await this.deps.kube.listClaims(namespace, `${LABEL_CLUSTER}=${name}`))
      .map((c) => c.metadata?.name ?? '')
      .filter((claim) => isNodeClaim(name, claim))
      .sort(byOrdinal);
    if (claims.length === 0) return;
    await this.deps.event(cluster, {
      type: 'Warning',
      reason: 'VolumesFound',
      message: `${claims.join(', ')} already exist (kept from an earlier cluster named ${name}?): its nodes start on that data, and refuse it (token_mismatch) unless it holds the tokens assigned now; delete the claims first for a new, empty cluster`,
    });
  }

  /** Adds or removes VOLUMES_FINALIZER, conditionally on the version read (another writer's change is kept). */
  private async setFinalizer(cluster: DynamoCluster, on: boolean): Promise<DynamoCluster> {
    const others = (cluster.metadata.finalizers ?? []).filter((f) => f !== VOLUMES_FINALIZER);
    const finalizers = on ? [...others, VOLUMES_FINALIZER] : others;
    const { namespace, name, resourceVersion } = cluster.metadata;
    return await this.deps.kube.patchClusterFinalizers(namespace, name, finalizers, resourceVersion ?? '');
  }
}

function byOrdinal(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
