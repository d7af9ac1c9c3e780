// Entry point of the operator process (node dist/operator/src/main.js): in-cluster or kubeconfig credentials,
// leader election on a Lease in its own namespace, clean shutdown on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { startOperator } from './controller.js';
import { operatorLogger } from './log.js';
import { OperatorMetrics, serveHealth } from './metrics.js';

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

function ownNamespace(): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim();
  } catch {
    return 'default';
  }
}

async function main(): Promise<void> {
  const log = operatorLogger();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  const leaderElection =
    process.env.DYNAMO_OPERATOR_LEADER_ELECT === 'false'
      ? (false as const)
      : {
          namespace: process.env.DYNAMO_OPERATOR_LEASE_NAMESPACE ?? ownNamespace(),
          name: process.env.DYNAMO_OPERATOR_LEASE_NAME ?? 'dynamo-operator',
          ...(process.env.POD_NAME ? { identity: process.env.POD_NAME } : {}),
        };
  const metrics = new OperatorMetrics();
  let started = false;
  const port = Number(process.env.DYNAMO_OPERATOR_HTTP_PORT ?? 8080);
  const server = await serveHealth(port, metrics, () => started);
  const operator = await startOperator({
    kubeConfig,
    log,
    metrics,
    leaderElection,
    watchNamespace: process.env.WATCH_NAMESPACE ?? '',
    operatorNamespace: ownNamespace(),
    onLostLeadership: () => {
      // Another replica leads now; exit so this one restarts clean and campaigns again.
      log.error('lost leadership; exiting');
      process.exit(1);
    },
  });
  started = true;
  log.info(
    { port, watchNamespace: process.env.WATCH_NAMESPACE || '(all)' },
    'serving /healthz, /readyz, /metrics',
  );
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    server.close();
    operator.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err: String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  console.error(JSON.stringify({ level: 'fatal', msg: 'operator failed to start', err: String(err) }));
  process.exit(1);
});
