#!/usr/bin/env node
/**
 * `npm run bench`: YCSB-style benchmark of the dynamo-kv HTTP API. Loads --records keys, runs workloads
 * A/B/C against a cluster (a local one it starts, or --endpoints), each closed-loop (the peak) and then
 * open-loop at half that peak (the latency a cluster shows below saturation), does the same on a local
 * cluster whose bucket resolves conflicts by last write wins and against a 1-node n=1,r=1,w=1 baseline,
 * prints tables (with the siblings reads met) and writes a JSON result file. Flags: options.ts or --help.
 */
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BenchClient, type BucketProps, type KvClient } from './client.js';
import { type LocalCluster, type NodeProcess, type NodeStartTimes, startLocalCluster } from './cluster.js';
import { type BenchOptions, helpText, parseBenchArgs, UsageError } from './options.js';
import { SeededRandom } from './random.js';
import {
  type Comparison,
  comparePhases,
  formatComparisonTable,
  formatErrors,
  formatOpenLoopTable,
  formatPhaseTable,
  formatSiblingTable,
  type PhaseSummary,
  summarizePhase,
} from './report.js';
import { type PhasePlan, runPhase } from './runner.js';
import {
  cpuSnapshot,
  type ExchangeCpu,
  type MemorySample,
  memorySample,
  nextExchangeCpu,
  serverCpu,
  treesBuilt,
} from './server-stats.js';
import { loadOperations, ValueSource, WORKLOAD_NAMES, WORKLOADS, workloadOperations } from './workload.js';
import { ZIPFIAN_CONSTANT } from './zipfian.js';

/** Replication of the baseline bucket: one copy, one reply. */
const BASELINE_PROPS: Partial<BucketProps> = { n: 1, r: 1, w: 1 };

/** The open-loop phase after each workload is offered this share of the workload's closed-loop ops/s. */
const HALF_LOAD = 0.5;

/** What to benchmark: a local cluster to start, or existing endpoints. */
interface Target {
  label: 'cluster' | 'baseline' | 'insecure cluster' | 'lww cluster';
  local?: { nodes: number; insecure?: boolean };
  endpoints?: string[];
  /** Bucket props set before loading (none: the server's defaults). */
  props?: Partial<BucketProps>;
}

interface TargetResult {
  label: string;
  kind: 'local' | 'external';
  nodes: number;
  endpoints: string[];
  /** The bucket's props as the server reported them (null when it would not say). */
  bucketProps: BucketProps | null;
  /** Phases through any node (round-robin), the coordinator forwarding to replicas. */
  phases: PhaseSummary[];
  /** The same workloads through DynamoClient, which sends each request to a replica of its key. */
  routedPhases: PhaseSummary[] | null;
  /** What was measured of the node processes (local clusters on Linux). */
  server: ServerReport | null;
}

/** Per node process of a local cluster: start times, memory through the run, a restart on the loaded data. */
interface ServerReport {
  /** From each node process's start to its first 200 on /health and on /ready (ms). */
  start: NodeStartTimes[];
  memory: MemorySample[];
  /** The cluster stopped after the load and started again on its data (null with --no-restart). */
  restart: {
    records: number;
    start: NodeStartTimes[];
    /** Node age (ms) when its anti-entropy trees were built from the store; null if not in time. */
    treesBuiltMs: Array<{ id: string; ms: number | null }>;
    /** CPU of one anti-entropy exchange on the loaded data, as each node accounts for it. */
    exchangeCpu: ExchangeCpu[];
  } | null;
}

/** How long the restarted nodes get to build their trees and run one more exchange (30 s interval). */
const RESTART_SETTLE_MS = 10 * 60_000;

class Interrupted extends Error {}

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

function progressPrinter(label: string, total: number | undefined): PhasePlan['onProgress'] {
  if (!process.stderr.isTTY) return undefined;
  return (done, elapsedMs) => {
    const rate = elapsedMs > 0 ? Math.round((done * 1000) / elapsedMs) : 0;
    const of = total === undefined ? '' : `/${total}`;
    process.stderr.write(`\r  ${label}: ${done}${of} ops, ${rate} ops/s   `);
  };
}

function clearProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

function formatStart(times: NodeStartTimes[]): string {
  const s = (ms: number | null) => (ms === null ? '?' : (ms / 1000).toFixed(2));
  return times.map((t) => `${t.id} ${s(t.healthMs)}/${s(t.readyMs)} s`).join(', ');
}

function formatMemory(sample: MemorySample | undefined): string {
  return sample ? sample.nodes.map((n) => `${n.id} ${n.anonMiB}/${n.rssMiB}`).join(', ') : '-';
}

async function runTarget(target: Target, options: BenchOptions, signal: AbortSignal): Promise<TargetResult> {
  let local: LocalCluster | undefined;
  try {
    let endpoints = target.endpoints ?? [];
    if (target.local) {
      out(`${target.label}: starting a local ${target.local.nodes}-node cluster...`);
      local = await startLocalCluster({ nodes: target.local.nodes, insecure: target.local.insecure, signal });
      endpoints = local.endpoints;
    }
    const procs = (): NodeProcess[] => local?.nodeProcesses() ?? [];
    const server: ServerReport | null =
      local && procs().length > 0 ? { start: local.startTimes, memory: [], restart: null } : null;
    const remember = (at: string) => {
      const sample = memorySample(at, procs());
      if (sample && server) server.memory.push(sample);
      return sample;
    };
    if (server) out(`${target.label}: nodes to /health / /ready: ${formatStart(server.start)}`);
    remember('started');
    out(`${target.label}: ${endpoints.join(', ')}`);
    // A local cluster's own admin token; for an existing cluster, DYNAMO_TOKEN if it requires one.
    const token = local ? local.token : process.env.DYNAMO_TOKEN;
    // Over https, the local cluster's CA, or DYNAMO_CA for an existing one.
    const ca = local ? local.ca : process.env.DYNAMO_CA ? readFileSync(process.env.DYNAMO_CA) : undefined;
    const client = new BenchClient(endpoints, options.concurrency, 'any', token, ca);
    try {
      if (target.props) await client.setBucketProps(options.bucket, target.props);
      const bucketProps = await client.getBucketProps(options.bucket).catch(() => null);
      if (bucketProps)
        out(`${target.label}: bucket "${options.bucket}" props ${JSON.stringify(bucketProps)}`);

      // The same seed streams for every target, so cluster and baseline see identical operation sequences.
      const values = new ValueSource(options.valueSize, new SeededRandom(options.seed, 1));
      const phases: PhaseSummary[] = [];
      const run = async (
        plan: Omit<PhasePlan, 'bucket' | 'concurrency' | 'signal' | 'onProgress'>,
        via: KvClient = client,
        into: PhaseSummary[] = phases,
        label: string = target.label,
      ): Promise<PhaseSummary> => {
        const total = plan.operations;
        const nodes = procs();
        const cpu0 = cpuSnapshot(nodes);
        const result = await runPhase(via, {
          ...plan,
          bucket: options.bucket,
          concurrency: options.concurrency,
          signal,
          onProgress: progressPrinter(`${label} ${plan.name}`, total),
        });
        clearProgress();
        if (signal.aborted) throw new Interrupted();
        const summary = summarizePhase(result, plan.rate);
        const o = summary.overall;
        const cpu = serverCpu(nodes, cpu0, cpuSnapshot(nodes), o.count + o.errors);
        if (cpu) summary.serverCpu = cpu;
        out(
          `${label}: ${summary.name} done: ${o.count} ok, ${o.errors} errors, ` +
            `${o.opsPerSec.toFixed(0)} ops/s over ${summary.elapsedSec.toFixed(1)} s` +
            (plan.rate === undefined
              ? ''
              : ` (offered ${plan.rate.toFixed(0)}), p50 ${o.latencyMs.p50} ms, p99 ${o.latencyMs.p99} ms`) +
            (cpu ? `, server CPU ${cpu.usPerOp.toFixed(0)} µs/op` : ''),
        );
        into.push(summary);
        return summary;
      };
      await run({ name: 'load', operations: options.records, nextOperation: loadOperations(values) });
      remember('after load');
      if (local && server && options.restart && target.label === 'cluster') {
        // The loaded cluster stopped and started again: what a node costs to start on this much data.
        out(`${target.label}: restarting the cluster on its ${options.records} records...`);
        await local.restart();
        out(`${target.label}: restarted; nodes to /health / /ready: ${formatStart(local.startTimes)}`);
        remember('after restart');
        const treesBuiltMs = await treesBuilt(procs(), local.ca, RESTART_SETTLE_MS);
        remember('trees built');
        const exchangeCpu = await nextExchangeCpu(procs(), local.ca, RESTART_SETTLE_MS);
        remember('after an anti-entropy exchange');
        server.restart = { records: options.records, start: local.startTimes, treesBuiltMs, exchangeCpu };
        out(
          `${target.label}: trees built at ${treesBuiltMs.map((t) => `${t.id} ${t.ms === null ? '?' : (t.ms / 1000).toFixed(1)} s`).join(', ')}; ` +
            `one exchange: ${exchangeCpu.map((e) => `${e.id} ${e.cpuMs ?? '?'} ms CPU`).join(', ')}`,
        );
      }
      // With routing, each workload runs through any node and then, with the same seed, through
      // DynamoClient, back to back, so both modes meet the same store state (compaction debt included).
      const routed =
        target.label === 'cluster' && options.routing
          ? new BenchClient(endpoints, options.concurrency, 'preference-list', token, ca)
          : undefined;
      const routedPhases: PhaseSummary[] | null = routed ? [] : null;
      try {
        await routed?.prepare();
        for (const name of options.workloads) {
          const operations = (stream: number) =>
            workloadOperations(
              WORKLOADS[name],
              options.records,
              new SeededRandom(options.seed, stream + WORKLOAD_NAMES.indexOf(name)),
              values,
            );
          const plan = () =>
            options.durationSec === undefined
              ? { name, operations: options.operations, nextOperation: operations(10) }
              : { name, durationMs: options.durationSec * 1000, nextOperation: operations(10) };
          const peak = await run(plan());
          if (routed && routedPhases) await run(plan(), routed, routedPhases, 'cluster, client-routed');
          const rate = peak.overall.opsPerSec * HALF_LOAD;
          if (options.halfLoad && rate > 0) {
            // As long as the closed-loop phase took (or --duration), at half its rate.
            const seconds = options.durationSec ?? peak.elapsedSec;
            await run({
              name: `${name}@${HALF_LOAD * 100}%`,
              rate,
              operations: Math.max(1, Math.round(rate * seconds)),
              durationMs: seconds * 1000 + 1_000,
              nextOperation: operations(20),
            });
          }
        }
      } finally {
        await routed?.close();
      }
      remember('end');
      return {
        label: target.label,
        kind: target.local ? 'local' : 'external',
        nodes: endpoints.length,
        endpoints,
        bucketProps,
        phases,
        routedPhases,
        server,
      };
    } finally {
      await client.close();
    }
  } finally {
    if (local) {
      out(`${target.label}: stopping the local cluster`);
      await local.stop();
    }
  }
}

function environment(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    osType: os.type(),
    osRelease: os.release(),
    cpuModel: cpus[0]?.model ?? null,
    cpuCount: cpus.length,
    totalMemoryBytes: os.totalmem(),
    loadAverage: os.loadavg(),
  };
}

function printTarget(result: TargetResult, description: string): void {
  out();
  out(`== ${result.label}: ${description}`);
  out(formatPhaseTable(result.phases));
  const errors = formatErrors(result.phases);
  if (errors.length > 0) out(`errors: ${errors.join('; ')}`);
  if (result.phases.some((phase) => phase.offeredOpsPerSec !== undefined)) {
    out(
      `open loop at ${HALF_LOAD * 100}% of the closed-loop peak (latency from when each operation was due):`,
    );
    out(formatOpenLoopTable(result.phases));
  }
  if (result.phases.some((phase) => phase.siblings)) {
    out(
      `values met by reads (bucket conflict ${result.bucketProps?.conflict ?? '?'}; more than 1: siblings of concurrent updates):`,
    );
    out(formatSiblingTable(result.phases));
  }
  const server = result.server;
  if (!server) return;
  out('node processes:');
  out(`  start to /health / /ready: ${formatStart(server.start)}`);
  if (server.restart) {
    const r = server.restart;
    out(`  restart on ${r.records} records, start to /health / /ready: ${formatStart(r.start)}`);
    out(
      `  anti-entropy trees built at: ${r.treesBuiltMs.map((t) => `${t.id} ${t.ms === null ? '?' : (t.ms / 1000).toFixed(1)} s`).join(', ')}; ` +
        `one exchange: ${r.exchangeCpu.map((e) => `${e.id} ${e.cpuMs ?? '?'} ms CPU`).join(', ')}`,
    );
  }
  out('  memory, RssAnon/VmRSS MiB:');
  for (const sample of server.memory) out(`    ${sample.at.padEnd(32)} ${formatMemory(sample)}`);
  const cpu = result.phases.filter((p) => p.serverCpu);
  if (cpu.length > 0)
    out(
      `  server CPU per phase (ms, by node): ${cpu
        .map((p) => `${p.name} ${p.serverCpu!.perNode.map((n) => `${n.id} ${n.cpuMs.toFixed(0)}`).join('/')}`)
        .join('; ')}`,
    );
}

async function main(argv: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    const parsed = parseBenchArgs(argv);
    if (parsed.help) {
      process.stdout.write(helpText());
      return 0;
    }
    options = parsed.options;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ycsb: ${err.message}\nRun with --help to see the flags.\n`);
      return 2;
    }
    throw err;
  }

  const controller = new AbortController();
  setMaxListeners(0, controller.signal); // every in-flight request listens for the abort
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(130); // second signal: the exit hook still kills clusters
    process.stderr.write(`\n${signal}: stopping (again to force)...\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const startedAt = new Date();
  const amount = options.durationSec === undefined ? `${options.operations} ops` : `${options.durationSec} s`;
  out(
    `dynamo-kv YCSB: ${options.records} records, workloads ${options.workloads.join(',')} × ${amount}, ` +
      `${options.concurrency} clients, ${options.valueSize} B values, seed ${options.seed}`,
  );

  const clusterTarget: Target = options.endpoints
    ? { label: 'cluster', endpoints: options.endpoints }
    : { label: 'cluster', local: { nodes: options.nodes } };
  const baselineTarget: Target | undefined = !options.baseline
    ? undefined
    : options.baselineEndpoint
      ? { label: 'baseline', endpoints: [options.baselineEndpoint], props: BASELINE_PROPS }
      : { label: 'baseline', local: { nodes: 1 }, props: BASELINE_PROPS };

  // The same cluster without TLS and tokens, to measure what they cost (same run, same seed).
  const insecureTarget: Target | undefined = options.compareInsecure
    ? { label: 'insecure cluster', local: { nodes: options.nodes, insecure: true } }
    : undefined;
  // The same cluster with a bucket that resolves conflicts by last write wins: no siblings to carry.
  const lwwTarget: Target | undefined = options.lww
    ? { label: 'lww cluster', local: { nodes: options.nodes }, props: { conflict: 'lww' } }
    : undefined;

  let cluster: TargetResult;
  let baseline: TargetResult | null = null;
  let insecure: TargetResult | null = null;
  let lww: TargetResult | null = null;
  try {
    cluster = await runTarget(clusterTarget, options, controller.signal);
    if (lwwTarget) lww = await runTarget(lwwTarget, options, controller.signal);
    if (insecureTarget) insecure = await runTarget(insecureTarget, options, controller.signal);
    if (baselineTarget) baseline = await runTarget(baselineTarget, options, controller.signal);
  } catch (err) {
    clearProgress();
    if (controller.signal.aborted) {
      process.stderr.write('ycsb: interrupted; no results written\n');
      return 130;
    }
    process.stderr.write(`ycsb: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }

  const comparison: Comparison[] | null = baseline ? comparePhases(cluster.phases, baseline.phases) : null;
  printTarget(
    cluster,
    `${cluster.nodes} node(s), bucket props ${JSON.stringify(cluster.bucketProps ?? 'default')}`,
  );
  if (baseline) {
    printTarget(baseline, `${baseline.nodes} node(s), bucket props ${JSON.stringify(baseline.bucketProps)}`);
  }
  const conflictModes = lww ? comparePhases(lww.phases, cluster.phases) : null;
  if (lww && conflictModes) {
    printTarget(lww, `${lww.nodes} node(s), bucket props ${JSON.stringify(lww.bucketProps)}`);
    out();
    out('== lww ÷ siblings (ops/s ratio > 1: last write wins is faster; p99 ratio < 1: lower tail)');
    out(formatComparisonTable(conflictModes));
  }
  if (comparison) {
    out();
    out('== cluster ÷ baseline (ops/s ratio < 1: cluster slower; p99 ratio > 1: cluster slower)');
    out(formatComparisonTable(comparison));
  }
  const security = insecure ? comparePhases(cluster.phases, insecure.phases) : null;
  if (insecure && security) {
    printTarget(insecure, `${insecure.nodes} node(s), no TLS and no client tokens (dynamo local --insecure)`);
    out();
    out(
      '== TLS and auth on ÷ off (ops/s ratio < 1: security costs throughput; p99 ratio > 1: it costs latency)',
    );
    out(formatComparisonTable(security));
  }
  const routing = cluster.routedPhases ? comparePhases(cluster.routedPhases, cluster.phases) : null;
  if (cluster.routedPhases && routing) {
    printTarget(
      { ...cluster, phases: cluster.routedPhases },
      'client-routed (DynamoClient sends each request to a replica of its key)',
    );
    out();
    out(
      '== client-routed ÷ any-node (ops/s ratio > 1: routing by the client is faster; p99 ratio < 1: lower tail)',
    );
    out(formatComparisonTable(routing));
  }

  const result = {
    benchmark: 'ycsb',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    config: {
      records: options.records,
      operations: options.durationSec === undefined ? options.operations : null,
      durationSec: options.durationSec ?? null,
      concurrency: options.concurrency,
      valueSize: options.valueSize,
      workloads: options.workloads.map((name) => WORKLOADS[name]),
      keyDistribution: { generator: 'scrambled zipfian', zipfianConstant: ZIPFIAN_CONSTANT },
      bucket: options.bucket,
      seed: options.seed,
      nodes: options.endpoints ? null : options.nodes,
      endpoints: options.endpoints ?? null,
      baselineEndpoint: options.baselineEndpoint ?? null,
      baseline: options.baseline,
      compareInsecure: options.compareInsecure,
      lww: options.lww,
      halfLoad: options.halfLoad ? HALF_LOAD : null,
    },
    environment: environment(),
    cluster,
    baseline,
    comparison,
    routing,
    insecure,
    security,
    lww,
    conflictModes,
  };
  const file = path.resolve(options.out);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  out();
  const shown = path.relative(process.cwd(), file);
  out(`results written to ${shown.startsWith('..') ? file : shown}`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ycsb: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
