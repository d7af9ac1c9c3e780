/**
 * The Grafana dashboard against real data: a 3-node cluster, a real Prometheus scraping it every second,
 * a workload that touches every panel (404s, siblings, a quorum failure while a node is down), then every
 * panel query run through Prometheus's HTTP API. Also lints each node's /metrics with promtool.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, TestCluster, waitFor } from '../integration/harness.js';
import { ensureTools } from '../support/system-tools.js';
import { dataPanels, loadDashboard, substituteVariables } from './dashboard.js';

const INSTALL_HINT = 'run `bash hack/install-prometheus.sh` (as root; the suite runs it itself when it can)';

/** Fails (never skips) when a binary from Debian's prometheus package is missing. */
function requireBinary(name: string): void {
  const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`${name} is not installed (${r.error?.message ?? r.stderr}): ${INSTALL_HINT}`);
  }
}

interface QueryResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

class Prometheus {
  private proc?: ChildProcess;
  private readonly output: string[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'dynamo-prom-'));
  constructor(readonly port: number) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts Prometheus scraping `targets` (host:port) every second; resolves when it is ready. */
  async start(targets: string[]): Promise<void> {
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: dynamo',
      '    static_configs:',
      `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
      '',
    ].join('\n');
    writeFileSync(join(this.dir, 'prometheus.yml'), config);
    const proc = spawn(
      'prometheus',
      [
        `--config.file=${join(this.dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(this.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    const keep = (b: Buffer) => this.output.push(b.toString());
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    await waitFor(
      'prometheus ready',
      async () => {
        if (proc.exitCode !== null) throw new Error(`prometheus exited: ${this.output.join('')}`);
        return (await fetch(`${this.url}/-/ready`)).ok;
      },
      30_000,
    );
  }

  async query(expr: string): Promise<QueryResult> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as QueryResult;
  }

  /** The instant vector of `expr`, or throws with Prometheus's error. */
  async vector(expr: string): Promise<NonNullable<QueryResult['data']>['result']> {
    const r = await this.query(expr);
    if (r.status !== 'success' || !r.data) throw new Error(`${expr}: ${r.status} ${r.error ?? ''}`);
    return r.data.result;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const keyUrl = (base: string, bucket: string, key: string, query = '') =>
  `${base}/buckets/${bucket}/keys/${encodeURIComponent(key)}${query}`;

async function put(url: string, value: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(url, {
    method: 'PUT',
    body: value,
    headers: { 'Content-Type': 'text/plain', ...headers },
  });
  await res.arrayBuffer();
  return res.status;
}

async function get(url: string): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}

/** Traffic that gives every panel something to show. */
async function workload(c: TestCluster): Promise<void> {
  for (let i = 0; i < 30; i++) {
    const node = c.url(i % 3);
    expect(await put(keyUrl(node, 'dash', `k${i}`), `value ${i}`)).toBe(204);
    expect(await get(keyUrl(c.url((i + 1) % 3), 'dash', `k${i}`))).toBe(200);
    expect(await get(keyUrl(node, 'dash', `missing-${i}`))).toBe(404);
  }
  // Two writes without a context are concurrent: the next read returns both as siblings. (Read through
  // n1, not n3: n3 restarts below and its counters start again from zero.)
  expect(await put(keyUrl(c.url(1), 'dash', 'cart'), 'a')).toBe(204);
  expect(await put(keyUrl(c.url(2), 'dash', 'cart'), 'b')).toBe(204);
  expect(await get(keyUrl(c.url(0), 'dash', 'cart'))).toBe(300);
  const del = await fetch(keyUrl(c.url(0), 'dash', 'k0'), { method: 'DELETE' });
  expect(del.status).toBe(204);

  // With n3 down, w=3 cannot be met (quorum failure, peer errors); w=2 writes leave n3 stale.
  await c.kill(2);
  expect(await put(keyUrl(c.url(0), 'dash', 'all-replicas', '?w=3'), 'x')).toBe(503);
  for (let i = 0; i < 5; i++) expect(await put(keyUrl(c.url(1), 'dash', `while-down-${i}`), 'y')).toBe(204);
  await c.startNode(2);
  // Reads from all three replicas find n3 stale and repair it (once n1 reaches n3 again: its transport
  // may still be backing off from the connections n3 refused while down).
  for (let i = 0; i < 5; i++) {
    const url = keyUrl(c.url(0), 'dash', `while-down-${i}`, '?r=3');
    await waitFor(`r=3 read of while-down-${i}`, async () => (await get(url)) === 200, 5000);
  }
}

describe('the Grafana dashboard on a real Prometheus', () => {
  let cluster: TestCluster | undefined;
  let prometheus: Prometheus | undefined;

  beforeAll(async () => {
    ensureTools(['prometheus', 'promtool'], 'install-prometheus.sh');
    requireBinary('prometheus');
    requireBinary('promtool');
    cluster = await TestCluster.start(3, ['--anti-entropy-interval-ms', '300']);
    prometheus = new Prometheus(await freePort());
    const targets = cluster.nodes.map((n) => `127.0.0.1:${n.httpPort}`);
    await prometheus.start(targets);
    const p = prometheus;
    const allUp = async () => {
      const up = await p.vector('up{job="dynamo"}');
      return up.length === 3 && up.every((s) => s.value[1] === '1');
    };
    await waitFor('prometheus scraping all three nodes', allUp, 30_000);

    await workload(cluster);

    // A few scrapes of every node after the workload, the restarted one included.
    const after = Date.now() / 1000 + 3;
    await waitFor(
      'three scrapes after the workload',
      async () =>
        (await allUp()) && (await p.vector(`min(timestamp(up{job="dynamo"})) > ${after}`)).length > 0,
      30_000,
    );
  }, 600_000); // a first run may install prometheus

  afterAll(async () => {
    await prometheus?.stop();
    await cluster?.stop();
  });

  const panels = dataPanels(loadDashboard());

  it.each(panels.map((p) => [p.title ?? `panel ${p.id}`, p] as const))(
    'panel "%s" returns data for each of its queries',
    async (title, panel) => {
      const failures: string[] = [];
      for (const target of panel.targets ?? []) {
        const expr = substituteVariables(target.expr);
        const r = await prometheus!.query(expr);
        if (r.status !== 'success') failures.push(`${target.refId} ${expr}: ${r.status} ${r.error ?? ''}`);
        else if (!r.data?.result.length) failures.push(`${target.refId} ${expr}: no series`);
      }
      expect(failures, `panel "${title}"`).toEqual([]);
    },
  );

  it('lints every node /metrics with promtool check metrics', async () => {
    for (const node of cluster!.nodes) {
      const text = await (await fetch(`${node.url}/metrics`)).text();
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(r.error, INSTALL_HINT).toBeUndefined();
      const findings = `${r.stdout}\n${r.stderr}`
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      expect(findings, `promtool check metrics on ${node.id}`).toEqual([]);
      expect(r.status, `promtool exit code on ${node.id}`).toBe(0);
    }
  });
});
