// The operator's own metrics and its health endpoints (/healthz, /readyz, /metrics) on DYNAMO_OPERATOR_HTTP_PORT.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: 'dynamo_operator_reconciles_total',
    help: 'Reconciles by result (done, requeue, error).',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'dynamo_operator_reconcile_duration_seconds',
    help: 'Time one reconcile of a cluster took.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'dynamo_operator_leader',
    help: '1 while this replica holds the leader Lease.',
    registers: [this.registry],
  });
}

/** Serves /healthz (alive), /readyz (started) and /metrics; returns the listening server. */
export async function serveHealth(
  port: number,
  metrics: OperatorMetrics,
  ready: () => boolean,
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok' : 'starting');
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err) => res.writeHead(500).end(String(err)),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, resolve);
  });
  return server;
}
