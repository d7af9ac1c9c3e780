// The operator assembled: watches feed a work queue of cluster keys, workers run the reconciler, a periodic
// resync re-queues every cluster, and (optionally) a Lease decides which replica does any of it.
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorMessage, ClientNodeKubeApi, type KubeApi } from './kube.js';
import { LeaderElector } from './leader-election.js';
import type { OperatorMetrics } from './metrics.js';
import { HttpNodeAdmin, type NodeAdmin, type NodeUrlResolver, resolveNodeUrl } from './node-admin.js';
import { Reconciler } from './reconcile.js';
import { watchClusters } from './watches.js';
import { WorkQueue } from './work-queue.js';

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** Where a node's HTTP API is reached (default: pod IP, else its stable DNS name, port 8080). */
  nodeUrl?: NodeUrlResolver;
  nodeAdmin?: NodeAdmin;
  kube?: KubeApi;
  /** Watch only this namespace (empty or undefined: all namespaces). */
  watchNamespace?: string;
  /** Lease to campaign for before reconciling; false runs as the only replica. */
  leaderElection?:
    | false
    | { namespace: string; name?: string; identity?: string; leaseDurationSeconds?: number };
  /** How often every cluster is reconciled even without events. */
  resyncMs?: number;
  concurrency?: number;
  metrics?: OperatorMetrics;
  /**
   * The namespace the operator's pods run in (main: its service account's namespace); clusters with
   * spec.network.clientFrom admit pods labelled app.kubernetes.io/component=operator there to the HTTP port.
   */
  operatorNamespace?: string;
  /** Called when leadership is lost after having been held (main exits so a fresh process campaigns again). */
  onLostLeadership?: () => void;
}

export interface RunningOperator {
  readonly reconciler: Reconciler;
  isLeader(): boolean;
  stop(): Promise<void>;
}

export async function startOperator(options: OperatorOptions): Promise<RunningOperator> {
  const { kubeConfig, log } = options;
  const identity =
    (options.leaderElection ? options.leaderElection.identity : undefined) ||
    `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const ownNodeAdmin = options.nodeAdmin === undefined ? new HttpNodeAdmin() : undefined;
  const reconciler = new Reconciler({
    kube: options.kube ?? new ClientNodeKubeApi(kubeConfig, identity),
    nodes: options.nodeAdmin ?? (ownNodeAdmin as HttpNodeAdmin),
    nodeUrl: options.nodeUrl ?? resolveNodeUrl,
    log,
    ...(options.operatorNamespace ? { operatorNamespace: options.operatorNamespace } : {}),
  });

  const queue = new WorkQueue(
    async (key) => {
      const [namespace, name] = key.split('/') as [string, string];
      const started = Date.now();
      const end = options.metrics?.duration.startTimer();
      try {
        const result = await reconciler.reconcile(namespace, name);
        options.metrics?.reconciles.inc({ result: result.kind });
        log.debug({ cluster: key, result, ms: Date.now() - started }, 'reconciled');
        return result.kind === 'requeue' ? { requeueAfterMs: result.afterMs } : {};
      } catch (err) {
        options.metrics?.reconciles.inc({ result: 'error' });
        throw err;
      } finally {
        end?.();
      }
    },
    (key, err, retryInMs) =>
      log.error({ cluster: key, err: apiErrorMessage(err), retryInMs }, 'reconcile failed'),
    { concurrency: options.concurrency ?? 4 },
  );

  const watches = watchClusters(
    kubeConfig,
    (key) => queue.add(key),
    log,
    options.watchNamespace || undefined,
  );
  let resync: NodeJS.Timeout | undefined;
  let running = false;

  const startWork = async (): Promise<void> => {
    if (running) return;
    running = true;
    await Promise.all(watches.all.map((w) => w.start()));
    resync = setInterval(() => {
      for (const c of watches.clusters.cache.list()) {
        if (c.metadata?.namespace && c.metadata.name) queue.add(`${c.metadata.namespace}/${c.metadata.name}`);
      }
    }, options.resyncMs ?? 60_000);
    resync.unref?.();
  };

  const stopWork = async (): Promise<void> => {
    if (!running) return;
    running = false;
    if (resync !== undefined) clearInterval(resync);
    await Promise.all(watches.all.map((w) => w.stop()));
    await queue.stop();
  };

  let elector: LeaderElector | undefined;
  if (options.leaderElection) {
    const election = options.leaderElection;
    elector = new LeaderElector(
      kubeConfig,
      {
        namespace: election.namespace,
        name: election.name ?? 'dynamo-operator',
        identity,
        leaseDurationSeconds: election.leaseDurationSeconds,
      },
      {
        onStartedLeading: () => {
          options.metrics?.leader.set(1);
          startWork().catch((err) => log.error({ err: String(err) }, 'could not start watches'));
        },
        onStoppedLeading: () => {
          options.metrics?.leader.set(0);
          void stopWork();
          options.onLostLeadership?.();
        },
      },
      log,
    );
    elector.start();
  } else {
    await startWork();
    options.metrics?.leader.set(1);
  }
  log.info({ identity, leaderElection: Boolean(options.leaderElection) }, 'operator started');

  return {
    reconciler,
    isLeader: () => (elector ? elector.isLeader : true),
    async stop() {
      await stopWork();
      await elector?.stop();
      await ownNodeAdmin?.close();
    },
  };
}
