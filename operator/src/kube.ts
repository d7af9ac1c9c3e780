// The Kubernetes API calls the reconciler makes, behind one small interface (a fake one serves unit tests).
// Every read goes to the API server, never to an informer cache: a reconcile acts on what is stored now.
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type V1PersistentVolumeClaim,
  type V1Pod,
} from '@kubernetes/client-node';
import {
  type DynamoCluster,
  type DynamoClusterStatus,
  FIELD_MANAGER,
  GROUP,
  PLURAL,
  VERSION,
} from './api-types.js';

/** An object to read: apiVersion, kind, namespace and name. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
}

export interface EventRecord {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface KubeApi {
  /** The cluster as stored, or undefined when it is gone. */
  getCluster(namespace: string, name: string): Promise<DynamoCluster | undefined>;
  /** Merge-patches the status subresource; null fields are removed. Returns the stored cluster. */
  patchClusterStatus(namespace: string, name: string, status: DynamoClusterStatus): Promise<DynamoCluster>;
  read<T extends KubernetesObject>(ref: ObjectRef): Promise<T | undefined>;
  /** Server-side apply as FIELD_MANAGER (forcing conflicts: the operator owns what it applies). */
  apply<T extends KubernetesObject>(object: T): Promise<T>;
  /** Deletes; false when it did not exist. */
  remove(ref: ObjectRef): Promise<boolean>;
  listPods(namespace: string, labelSelector: string): Promise<V1Pod[]>;
  listClaims(namespace: string, labelSelector: string): Promise<V1PersistentVolumeClaim[]>;
  /**
   * Sets the cluster's finalizers, conditionally on resourceVersion (a conflict fails rather than drop another
   * writer's finalizer). Returns the cluster as stored (a cluster being deleted is gone once its last finalizer
   * is).
   */
  patchClusterFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion: string,
  ): Promise<DynamoCluster>;
  /** Records an Event about the cluster. */
  recordEvent(cluster: DynamoCluster, event: EventRecord): Promise<void>;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiException && err.code === 404;
}

export function isConflict(err: unknown): boolean {
  return err instanceof ApiException && err.code === 409;
}

/** A short description of an API error for logs and conditions (the server's message, not the headers). */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? safeJson(err.body) : err.body;
    const message = (body as { message?: unknown } | undefined)?.message;
    return `HTTP ${err.code}: ${typeof message === 'string' ? message : String(err.body)}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}

/** KubeApi over @kubernetes/client-node. */
export class ClientNodeKubeApi implements KubeApi {
  private readonly objects: KubernetesObjectApi;
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;

  constructor(
    kubeConfig: KubeConfig,
    private readonly reportingInstance: string,
  ) {
    this.objects = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
  }

  async getCluster(namespace: string, name: string): Promise<DynamoCluster | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace,
        name,
      })) as DynamoCluster;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async patchClusterStatus(
    namespace: string,
    name: string,
    status: DynamoClusterStatus,
  ): Promise<DynamoCluster> {
    return (await this.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace,
        name,
        body: { status },
        fieldManager: FIELD_MANAGER,
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as DynamoCluster;
  }

  async read<T extends KubernetesObject>(ref: ObjectRef): Promise<T | undefined> {
    try {
      return (await this.objects.read({
        apiVersion: ref.apiVersion,
        kind: ref.kind,
        metadata: { name: ref.name, namespace: ref.namespace },
      })) as T;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async apply<T extends KubernetesObject>(object: T): Promise<T> {
    return await this.objects.patch(
      object,
      undefined,
      undefined,
      FIELD_MANAGER,
      true,
      PatchStrategy.ServerSideApply,
    );
  }

  async remove(ref: ObjectRef): Promise<boolean> {
    try {
      await this.objects.delete({
        apiVersion: ref.apiVersion,
        kind: ref.kind,
        metadata: { name: ref.name, namespace: ref.namespace },
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async listPods(namespace: string, labelSelector: string): Promise<V1Pod[]> {
    return (await this.core.listNamespacedPod({ namespace, labelSelector })).items;
  }

  async listClaims(namespace: string, labelSelector: string): Promise<V1PersistentVolumeClaim[]> {
    return (await this.core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector })).items;
  }

  async patchClusterFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion: string,
  ): Promise<DynamoCluster> {
    return (await this.custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace,
        name,
        body: { metadata: { finalizers, resourceVersion } },
        fieldManager: FIELD_MANAGER,
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as DynamoCluster;
  }

  async recordEvent(cluster: DynamoCluster, event: EventRecord): Promise<void> {
    const now = new Date();
    const { name, namespace, uid, resourceVersion } = cluster.metadata;
    await this.core.createNamespacedEvent({
      namespace,
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          name: `${name}.${now.getTime().toString(16)}${Math.random().toString(16).slice(2, 8)}`,
          namespace,
        },
        involvedObject: {
          apiVersion: cluster.apiVersion,
          kind: cluster.kind,
          name,
          namespace,
          uid,
          resourceVersion,
        },
        type: event.type,
        reason: event.reason,
        message: event.message.slice(0, 1024),
        source: { component: FIELD_MANAGER },
        reportingComponent: FIELD_MANAGER,
        reportingInstance: this.reportingInstance,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  }
}
