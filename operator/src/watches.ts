// Informers that keep running: client-node 1.x stops an informer for good on a watch or list error, so each one
// here is restarted with exponential backoff (reset once it connects again).
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
  PolicyV1Api,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type DynamoCluster, GROUP, PLURAL, VERSION } from './api-types.js';
import { LABEL_CLUSTER, LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY } from './names.js';

export interface RestartingInformer<T extends KubernetesObject> {
  cache: ObjectCache<T>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface RestartOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** Runs an informer, restarting it after every error with backoff; onChange(verb) gets each changed object. */
export function keepRunning<T extends KubernetesObject>(
  name: string,
  informer: Informer<T> & ObjectCache<T>,
  onChange: (verb: 'add' | 'update' | 'delete') => (obj: T) => void,
  log: Logger,
  options: RestartOptions = {},
): RestartingInformer<T> {
  const base = options.baseDelayMs ?? 500;
  const max = options.maxDelayMs ?? 30_000;
  let attempt = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const restart = (err: unknown): void => {
    if (stopped || timer !== undefined) return;
    const delay = Math.min(max, base * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    attempt++;
    log.warn(
      { informer: name, err: err instanceof Error ? err.message : String(err), retryInMs: Math.round(delay) },
      'watch failed; restarting',
    );
    timer = setTimeout(() => {
      timer = undefined;
      if (stopped) return;
      informer.start().catch(restart);
    }, delay);
  };

  informer.on('add', onChange('add'));
  informer.on('update', onChange('update'));
  informer.on('delete', onChange('delete'));
  informer.on('error', restart);
  informer.on('connect', () => {
    attempt = 0;
  });

  return {
    cache: informer,
    async start() {
      stopped = false;
      await informer.start().catch(restart);
    },
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      await informer.stop();
    },
  };
}

/** The cluster key (namespace/name) an owned object belongs to, from its cluster label. */
export function clusterKeyOf(obj: KubernetesObject): string | undefined {
  const cluster = obj.metadata?.labels?.[LABEL_CLUSTER];
  const namespace = obj.metadata?.namespace;
  return cluster && namespace ? `${namespace}/${cluster}` : undefined;
}

export interface ClusterWatches {
  clusters: RestartingInformer<DynamoCluster>;
  all: RestartingInformer<KubernetesObject>[];
}

/**
 * Watches DynamoClusters, and the StatefulSets, pods, Services, ConfigMaps and PodDisruptionBudgets of its
 * clusters, calling enqueue with a cluster key;
 * in one namespace when `namespace` is given (a namespaced install has no cluster-wide rights), else in all.
 */
export function watchClusters(
  kubeConfig: KubeConfig,
  enqueue: (key: string) => void,
  log: Logger,
  namespace?: string,
): ClusterWatches {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const apps = kubeConfig.makeApiClient(AppsV1Api);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const scope = namespace ? `/namespaces/${namespace}` : '';

  const clusterInformer = makeInformer<DynamoCluster>(
    kubeConfig,
    `/apis/${GROUP}/${VERSION}${scope}/${PLURAL}`,
    async () =>
      (await (namespace
        ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace })
        : custom.listCustomObjectForAllNamespaces({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
          }))) as KubernetesListObject<DynamoCluster>,
  );
  // A cluster is reconciled when its spec changes (generation), not when its status does: the operator writes
  // the status itself, and reacting to that would turn every requeue delay into a busy loop.
  const seenGeneration = new Map<string, number | undefined>();
  const onCluster = (verb: 'add' | 'update' | 'delete') => (obj: DynamoCluster) => {
    const { namespace, name, generation, deletionTimestamp } = obj.metadata ?? {};
    if (!namespace || !name) return;
    const key = `${namespace}/${name}`;
    if (verb === 'delete') {
      seenGeneration.delete(key);
    } else {
      const changed =
        verb === 'add' || seenGeneration.get(key) !== generation || deletionTimestamp !== undefined;
      seenGeneration.set(key, generation);
      if (!changed) return;
    }
    enqueue(key);
  };
  const clusters = keepRunning('dynamoclusters', clusterInformer, onCluster, log);
  const toCluster = () => (obj: KubernetesObject) => {
    const key = clusterKeyOf(obj);
    if (key) enqueue(key);
  };

  const owned = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
  const statefulSets = keepRunning(
    'statefulsets',
    makeInformer(
      kubeConfig,
      `/apis/apps/v1${scope}/statefulsets`,
      () =>
        namespace
          ? apps.listNamespacedStatefulSet({ namespace, labelSelector: owned })
          : apps.listStatefulSetForAllNamespaces({ labelSelector: owned }),
      owned,
    ),
    toCluster,
    log,
  );

  const podSelector = `${LABEL_NAME}=dynamo-kv,${LABEL_CLUSTER}`;
  const pods = keepRunning(
    'pods',
    makeInformer(
      kubeConfig,
      `/api/v1${scope}/pods`,
      () =>
        namespace
          ? core.listNamespacedPod({ namespace, labelSelector: podSelector })
          : core.listPodForAllNamespaces({ labelSelector: podSelector }),
      podSelector,
    ),
    toCluster,
    log,
  );

  // The other objects the operator owns: a deleted or edited Service, token ConfigMap or PodDisruptionBudget is
  // repaired at once, not at the next resync.
  const policy = kubeConfig.makeApiClient(PolicyV1Api);
  const services = keepRunning(
    'services',
    makeInformer(
      kubeConfig,
      `/api/v1${scope}/services`,
      () =>
        namespace
          ? core.listNamespacedService({ namespace, labelSelector: owned })
          : core.listServiceForAllNamespaces({ labelSelector: owned }),
      owned,
    ),
    toCluster,
    log,
  );
  const configMaps = keepRunning(
    'configmaps',
    makeInformer(
      kubeConfig,
      `/api/v1${scope}/configmaps`,
      () =>
        namespace
          ? core.listNamespacedConfigMap({ namespace, labelSelector: owned })
          : core.listConfigMapForAllNamespaces({ labelSelector: owned }),
      owned,
    ),
    toCluster,
    log,
  );
  const disruptionBudgets = keepRunning(
    'poddisruptionbudgets',
    makeInformer(
      kubeConfig,
      `/apis/policy/v1${scope}/poddisruptionbudgets`,
      () =>
        namespace
          ? policy.listNamespacedPodDisruptionBudget({ namespace, labelSelector: owned })
          : policy.listPodDisruptionBudgetForAllNamespaces({ labelSelector: owned }),
      owned,
    ),
    toCluster,
    log,
  );

  return {
    clusters,
    all: [
      clusters,
      statefulSets,
      pods,
      services,
      configMaps,
      disruptionBudgets,
    ] as unknown as RestartingInformer<KubernetesObject>[],
  };
}
