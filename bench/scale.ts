#!/usr/bin/env node
/**
 * `npm run bench:scale`: what a node holding many keys costs to start and to keep. Fills --nodes LevelDB
 * data directories with --keys objects of --value-bytes each (every node holds every key: n = 3 on 3
 * nodes), written through the project's own Replica and ObjectStore as a coordinated put on the first
 * node merged into the others, so the stores hold what a cluster would; then, --rounds times, starts
 * real node processes on them (static membership, no TLS) and measures per node:
 * - the time from spawning the process to its first answer on /health and to /ready;
 * - RssAnon and VmRSS (/proc/PID/status) once ready, and after its first anti-entropy exchange;
 * - the CPU (user + system) it used from start to ready and up to its first exchange;
 * - the CPU of one exchange as the node reports it (dynamo_merkle_exchange_cpu_seconds_total over
 *   dynamo_merkle_exchanges_total), when the node exports it.
 * Medians over the rounds are printed. With --data-dir the filled directories are kept and reused by
 * later runs of the same --keys/--value-bytes/--nodes/--hints (filling 1M keys of 1 KB takes minutes).
 * --hints N also queues N hints on each node (for the next node, each carrying one of the objects), as a
 * node holds them after a peer was down; --kill ends every round with SIGKILL instead of SIGTERM, so
 * each start after the first is a start after a crash (no key index saved at shutdown).
 * Flags: --keys 1000000 --value-bytes 1024 --nodes 3 --rounds 3 --ae-interval-ms 5000 --hints 0 --kill
 * --data-dir DIR --json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { BucketPropsTable } from '../node/src/buckets/props.js';
import { HintQueue } from '../node/src/handoff/hint-queue.js';
import type { PutReply } from '../node/src/replica/messages.js';
import { Replica } from '../node/src/replica/replica.js';
import { ObjectStore } from '../node/src/storage/store.js';
import { findFreePortRange, SERVER_CLI } from './cluster.js';
import { processCpuMicros, processMemory } from './proc.js';

const BUCKET = 'scale';
/** Keys in flight during the fill: enough for the write batcher to group hundreds per LevelDB batch. */
const FILL_CONCURRENCY = 512;
const POLL_MS = 20;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const progress = (line: string) => process.stderr.write(`${line}\n`);
const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

function positiveInt(name: string, raw: string | undefined): number {
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench:scale: --${name} must be a positive integer, got ${raw}`);
    process.exit(2);
  }
  return v;
}

interface FillSpec {
  keys: number;
  valueBytes: number;
  nodes: number;
  /** Hints queued on each node, for the next node. */
  hints: number;
}

/** Writes spec.keys objects into every node's store, as a cluster with n = nodes would hold them. */
async function fill(dirs: string[], spec: FillSpec): Promise<void> {
  const stores: ObjectStore[] = [];
  try {
    const replicas: Replica[] = [];
    for (const [i, dir] of dirs.entries()) {
      const store = await ObjectStore.open(dir, { syncWrites: false });
      stores.push(store);
      const props = await BucketPropsTable.load(store, {
        n: spec.nodes,
        r: 1,
        w: 1,
        conflict: 'siblings',
        ttl: 0,
      });
      replicas.push(
        new Replica(store, props, {
          self: `n${i + 1}`,
          clockMaxEntries: 50,
          clockPruneAgeMs: 86_400_000,
          maxSiblings: 100,
        }),
      );
    }
    const [first, ...others] = replicas as [Replica, ...Replica[]];
    /** The first few objects, for the hints to carry. */
    const objects: Buffer[] = [];
    const start = performance.now();
    let next = 0;
    let reported = 0;
    await Promise.all(
      Array.from({ length: Math.min(FILL_CONCURRENCY, spec.keys) }, async () => {
        for (let i = next++; i < spec.keys; i = next++) {
          // Each value differs (its index in front), as a real data set's would.
          const value = Buffer.alloc(spec.valueBytes, 'v');
          value.write(`${i}:`);
          const sib = {
            value,
            contentType: 'application/octet-stream',
            lastModified: Date.now(),
            deleted: false,
            expiresAt: 0,
          };
          const k = `key${i}`;
          const { obj } = (await first.handle({
            op: 'put',
            b: BUCKET,
            k,
            ctx: [],
            sib,
            lww: false,
          })) as PutReply;
          if (i < 1000) objects[i] = obj;
          await Promise.all(others.map((r) => r.handle({ op: 'merge', b: BUCKET, k, obj, lww: false })));
          if (i >= reported + spec.keys / 10) {
            reported = i;
            progress(
              `  filled ${i} of ${spec.keys} keys (${((performance.now() - start) / 1000).toFixed(0)} s)`,
            );
          }
        }
      }),
    );
    progress(
      `filled ${spec.keys} keys into ${dirs.length} stores in ${((performance.now() - start) / 1000).toFixed(0)} s`,
    );
    if (spec.hints > 0) {
      for (const [i, store] of stores.entries()) {
        const queue = await HintQueue.open(store.keySpace('h:'));
        const target = `n${((i + 1) % stores.length) + 1}`;
        let n = 0;
        await Promise.all(
          Array.from({ length: FILL_CONCURRENCY }, async () => {
            for (let h = n++; h < spec.hints; h = n++) {
              const j = h % objects.length;
              await queue.add({ target, bucket: BUCKET, key: `key${j}`, obj: objects[j]! });
            }
          }),
        );
      }
      progress(`queued ${spec.hints} hints on each node`);
    }
  } finally {
    for (const s of stores) await s.close();
  }
}

interface NodeSample {
  id: string;
  healthMs: number;
  readyMs: number;
  readyAnonMiB: number;
  readyRssMiB: number;
  /** CPU used from start to /ready. */
  readyCpuMs: number;
  /** Time from start to the end of its first anti-entropy exchange. */
  firstExchangeMs: number;
  exchangeAnonMiB: number;
  exchangeRssMiB: number;
  /** CPU used from start to the end of its first exchange (trees built, one exchange run). */
  exchangeCpuMs: number;
  /** The node's own account of one exchange's CPU, when it exports it. */
  cpuPerExchangeMs: number | null;
}

async function metrics(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
  return res.text();
}

function metricSum(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n'))
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{'))
      sum = (sum ?? 0) + Number(line.split(' ').pop());
  return sum;
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** Starts the nodes on the filled directories, measures them, and stops them. */
async function round(
  dirs: string[],
  aeIntervalMs: number,
  timeoutMs: number,
  kill: boolean,
): Promise<NodeSample[]> {
  const count = dirs.length;
  const base = await findFreePortRange(count * 2);
  const http = (i: number) => base + i;
  const peer = (i: number) => base + count + i;
  const ids = dirs.map((_, i) => `n${i + 1}`);
  const members = ids.map((id, i) => `${id}=127.0.0.1:${peer(i)}`).join(',');
  const procs: ChildProcess[] = [];
  const output: string[][] = ids.map(() => []);
  try {
    const t0 = performance.now();
    const starts: number[] = [];
    for (const [i, id] of ids.entries()) {
      const args = [SERVER_CLI, 'node', '--node-id', id, '--members', members, '--data-dir', dirs[i]!];
      args.push('--http-host', '127.0.0.1', '--http-port', String(http(i)));
      args.push('--advertise-http', `http://127.0.0.1:${http(i)}`);
      args.push('--peer-host', '127.0.0.1', '--peer-port', String(peer(i)));
      args.push('--anti-entropy-interval-ms', String(aeIntervalMs), '--log-level', 'warn');
      starts.push(performance.now());
      const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const keep = (b: Buffer) => {
        output[i]!.push(b.toString());
        if (output[i]!.length > 200) output[i]!.shift();
      };
      proc.stdout?.on('data', keep);
      proc.stderr?.on('data', keep);
      procs.push(proc);
    }
    const samples = ids.map((id) => ({ id }) as NodeSample);
    const url = (i: number) => `http://127.0.0.1:${http(i)}`;
    const deadline = t0 + timeoutMs;
    const check = (i: number) => {
      const p = procs[i]!;
      if (p.exitCode !== null || p.signalCode !== null)
        throw new Error(`${ids[i]} exited: ${output[i]!.join('').slice(-2000)}`);
      if (performance.now() > deadline) throw new Error(`${ids[i]}: timed out`);
    };
    await Promise.all(
      ids.map(async (_, i) => {
        const s = samples[i]!;
        const pid = procs[i]!.pid!;
        while (!(await answers(`${url(i)}/health`))) {
          check(i);
          await sleep(POLL_MS);
        }
        s.healthMs = performance.now() - starts[i]!;
        while (!(await answers(`${url(i)}/ready`))) {
          check(i);
          await sleep(POLL_MS);
        }
        s.readyMs = performance.now() - starts[i]!;
        const mem = processMemory(pid);
        s.readyAnonMiB = mib(mem?.anonBytes ?? Number.NaN);
        s.readyRssMiB = mib(mem?.rssBytes ?? Number.NaN);
        s.readyCpuMs = (processCpuMicros(pid) ?? Number.NaN) / 1000;
        // The first exchange this node ran: its last-exchange gauge appears.
        for (;;) {
          const text = await metrics(url(i)).catch(() => '');
          if (metricSum(text, 'dynamo_merkle_last_exchange_timestamp_seconds') !== undefined) break;
          check(i);
          await sleep(100);
        }
        s.firstExchangeMs = performance.now() - starts[i]!;
        const after = processMemory(pid);
        s.exchangeAnonMiB = mib(after?.anonBytes ?? Number.NaN);
        s.exchangeRssMiB = mib(after?.rssBytes ?? Number.NaN);
        s.exchangeCpuMs = (processCpuMicros(pid) ?? Number.NaN) / 1000;
        s.cpuPerExchangeMs = null;
      }),
    );
    // One more exchange per node, now that everything is built: the node's own CPU account of it.
    await Promise.all(
      ids.map(async (_, i) => {
        const text0 = await metrics(url(i));
        const n0 = metricSum(text0, 'dynamo_merkle_exchanges_total');
        const c0 = metricSum(text0, 'dynamo_merkle_exchange_cpu_seconds_total');
        if (n0 === undefined || c0 === undefined) return;
        for (;;) {
          check(i);
          await sleep(200);
          const text = await metrics(url(i));
          const n = metricSum(text, 'dynamo_merkle_exchanges_total')!;
          if (n > n0) {
            const c = metricSum(text, 'dynamo_merkle_exchange_cpu_seconds_total')!;
            samples[i]!.cpuPerExchangeMs = ((c - c0) * 1000) / (n - n0);
            return;
          }
        }
      }),
    );
    return samples;
  } finally {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const force = setTimeout(() => p.kill('SIGKILL'), 30_000);
            p.once('exit', () => {
              clearTimeout(force);
              resolve();
            });
            p.kill(kill ? 'SIGKILL' : 'SIGTERM');
          }),
      ),
    );
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string', default: '1000000' },
      'value-bytes': { type: 'string', default: '1024' },
      nodes: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      'ae-interval-ms': { type: 'string', default: '5000' },
      hints: { type: 'string', default: '0' },
      kill: { type: 'boolean', default: false },
      'timeout-s': { type: 'string', default: '900' },
      'data-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:scale -- [--keys 1000000] [--value-bytes 1024] [--nodes 3] [--rounds 3] [--ae-interval-ms 5000] [--hints 0] [--kill] [--timeout-s 900] [--data-dir DIR] [--json]\n',
    );
    return;
  }
  const spec: FillSpec = {
    keys: positiveInt('keys', values.keys),
    valueBytes: positiveInt('value-bytes', values['value-bytes']),
    nodes: positiveInt('nodes', values.nodes),
    hints: values.hints === '0' ? 0 : positiveInt('hints', values.hints),
  };
  const kill = values.kill === true;
  const rounds = positiveInt('rounds', values.rounds);
  const aeIntervalMs = positiveInt('ae-interval-ms', values['ae-interval-ms']);
  const timeoutMs = positiveInt('timeout-s', values['timeout-s']) * 1000;
  const keep = values['data-dir'] !== undefined;
  const root = values['data-dir'] ?? mkdtempSync(path.join(os.tmpdir(), 'dynamo-bench-scale-'));
  const dirs = Array.from({ length: spec.nodes }, (_, i) => path.join(root, `n${i + 1}`));
  const marker = path.join(root, 'filled.json');
  try {
    const filled = existsSync(marker) ? (JSON.parse(readFileSync(marker, 'utf8')) as FillSpec) : undefined;
    if (JSON.stringify(filled) !== JSON.stringify(spec)) {
      if (filled) progress(`${root} holds ${JSON.stringify(filled)}: filling it again`);
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
      await fill(dirs, spec);
      writeFileSync(marker, JSON.stringify(spec));
    } else progress(`reusing the ${spec.keys} keys filled in ${root}`);

    const all: NodeSample[][] = [];
    for (let r = 0; r < rounds; r++) {
      const samples = await round(dirs, aeIntervalMs, timeoutMs, kill);
      all.push(samples);
      for (const s of samples)
        progress(
          `  round ${r + 1} ${s.id}: /health ${(s.healthMs / 1000).toFixed(2)} s, /ready ${(s.readyMs / 1000).toFixed(2)} s, ` +
            `RssAnon ${s.readyAnonMiB} MiB ready / ${s.exchangeAnonMiB} MiB after its first exchange ` +
            `(at ${(s.firstExchangeMs / 1000).toFixed(1)} s), CPU ${(s.readyCpuMs / 1000).toFixed(2)} s to ready / ` +
            `${(s.exchangeCpuMs / 1000).toFixed(2)} s to first exchange` +
            (s.cpuPerExchangeMs === null ? '' : `, ${s.cpuPerExchangeMs.toFixed(1)} ms CPU per exchange`),
        );
    }
    const flat = all.flat();
    const med = (f: (s: NodeSample) => number | null) => {
      const xs = flat.map(f).filter((x): x is number => x !== null && !Number.isNaN(x));
      return xs.length === 0 ? null : Math.round(median(xs) * 10) / 10;
    };
    const max = (f: (s: NodeSample) => number) => Math.round(Math.max(...flat.map(f)) * 10) / 10;
    const result = {
      ...spec,
      rounds,
      aeIntervalMs,
      stop: kill ? 'SIGKILL' : 'SIGTERM',
      cpus: os.cpus().length,
      node: process.version,
      loadAverage: os.loadavg(),
      median: {
        healthMs: med((s) => s.healthMs),
        readyMs: med((s) => s.readyMs),
        readyAnonMiB: med((s) => s.readyAnonMiB),
        readyRssMiB: med((s) => s.readyRssMiB),
        readyCpuMs: med((s) => s.readyCpuMs),
        firstExchangeMs: med((s) => s.firstExchangeMs),
        exchangeAnonMiB: med((s) => s.exchangeAnonMiB),
        exchangeRssMiB: med((s) => s.exchangeRssMiB),
        exchangeCpuMs: med((s) => s.exchangeCpuMs),
        cpuPerExchangeMs: med((s) => s.cpuPerExchangeMs),
      },
      max: {
        healthMs: max((s) => s.healthMs),
        readyMs: max((s) => s.readyMs),
        exchangeAnonMiB: max((s) => s.exchangeAnonMiB),
      },
      samples: all,
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const m = result.median;
    const out = (line = '') => process.stdout.write(`${line}\n`);
    out(
      `${spec.nodes} nodes holding ${spec.keys} keys of ${spec.valueBytes} B each` +
        (spec.hints > 0 ? ` and ${spec.hints} hints` : '') +
        `, ${rounds} starts${kill ? ' (each round ended by SIGKILL: every start after the first follows a crash)' : ''}, median over every node and start:`,
    );
    out(
      `  /health after ${m.healthMs} ms (max ${result.max.healthMs}), /ready after ${m.readyMs} ms (max ${result.max.readyMs})`,
    );
    out(
      `  RssAnon ${m.readyAnonMiB} MiB when ready, ${m.exchangeAnonMiB} MiB after the first anti-entropy exchange (max ${result.max.exchangeAnonMiB}); VmRSS ${m.readyRssMiB} / ${m.exchangeRssMiB} MiB`,
    );
    out(
      `  CPU ${m.readyCpuMs} ms from start to ready, ${m.exchangeCpuMs} ms to the end of the first exchange (at ${m.firstExchangeMs} ms)`,
    );
    if (m.cpuPerExchangeMs !== null)
      out(`  one later exchange: ${m.cpuPerExchangeMs} ms CPU (the node's own account)`);
  } finally {
    if (!keep) rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench:scale: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
