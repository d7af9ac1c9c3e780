/**
 * What `npm run bench` measures of the server processes of a local cluster (Linux /proc, see proc.ts):
 * CPU per phase (user + system of every node process, before and after, divided by the operations the
 * phase completed), memory at named moments, and the CPU of one anti-entropy exchange as each node
 * accounts for it in its metrics.
 */
import { Agent, request } from 'undici';
import type { NodeProcess } from './cluster.js';
import { type ProcessMemory, processAgeSeconds, processCpuMicros, processMemory } from './proc.js';

/** Server CPU of one phase. */
export interface ServerCpu {
  /** Every node's CPU over the phase, in ms. */
  totalMs: number;
  /** totalMs over the operations the phase completed (successes and errors), in µs. */
  usPerOp: number;
  perNode: Array<{ id: string; cpuMs: number }>;
}

/** Memory of every node process at one moment. */
export interface MemorySample {
  at: string;
  nodes: Array<{ id: string; anonMiB: number; rssMiB: number }>;
}

const round = (v: number, digits = 1) => Math.round(v * 10 ** digits) / 10 ** digits;
const mib = (bytes: number) => round(bytes / 1024 / 1024);

/** CPU used so far by each process, µs (processes that are gone are left out). */
export function cpuSnapshot(procs: NodeProcess[]): Map<number, number> {
  const snap = new Map<number, number>();
  for (const p of procs) {
    const us = processCpuMicros(p.pid);
    if (us !== undefined) snap.set(p.pid, us);
  }
  return snap;
}

/** The server CPU between two snapshots, over ops operations; undefined when nothing was measured. */
export function serverCpu(
  procs: NodeProcess[],
  before: Map<number, number>,
  after: Map<number, number>,
  ops: number,
): ServerCpu | undefined {
  const perNode: ServerCpu['perNode'] = [];
  let total = 0;
  for (const p of procs) {
    const [b, a] = [before.get(p.pid), after.get(p.pid)];
    if (b === undefined || a === undefined) continue;
    perNode.push({ id: p.id, cpuMs: round((a - b) / 1000) });
    total += a - b;
  }
  if (perNode.length === 0) return undefined;
  return { totalMs: round(total / 1000), usPerOp: ops > 0 ? round(total / ops) : 0, perNode };
}

export function memorySample(at: string, procs: NodeProcess[]): MemorySample | undefined {
  const nodes: MemorySample['nodes'] = [];
  for (const p of procs) {
    const m: ProcessMemory | undefined = processMemory(p.pid);
    if (m) nodes.push({ id: p.id, anonMiB: mib(m.anonBytes), rssMiB: mib(m.rssBytes) });
  }
  return nodes.length === 0 ? undefined : { at, nodes };
}

/** The sum of a metric's samples in a Prometheus text exposition (undefined when absent). */
export function metricValue(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const next = line[name.length];
    if (next !== ' ' && next !== '{') continue;
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function scrape(endpoint: string, dispatcher: Agent): Promise<string> {
  const { statusCode, body } = await request(`${endpoint}/metrics`, {
    dispatcher,
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  });
  const text = await body.text();
  if (statusCode !== 200) throw new Error(`${endpoint}/metrics answered ${statusCode}`);
  return text;
}

export interface ExchangeCpu {
  id: string;
  /** CPU of the node's next anti-entropy exchange, as it accounts for it; null if none came in time. */
  cpuMs: number | null;
}

/**
 * Waits (up to timeoutMs) until each node has run one more anti-entropy exchange than it had, and returns
 * that exchange's CPU from dynamo_merkle_exchange_cpu_seconds_total / dynamo_merkle_exchanges_total.
 */
export async function nextExchangeCpu(
  procs: NodeProcess[],
  ca: Buffer | undefined,
  timeoutMs: number,
): Promise<ExchangeCpu[]> {
  const dispatcher = new Agent({ connect: { timeout: 2_000, ...(ca ? { ca } : {}) } });
  try {
    return await Promise.all(
      procs.map(async (p): Promise<ExchangeCpu> => {
        const deadline = Date.now() + timeoutMs;
        const read = async () => {
          const text = await scrape(p.endpoint, dispatcher);
          return {
            n: metricValue(text, 'dynamo_merkle_exchanges_total'),
            cpu: metricValue(text, 'dynamo_merkle_exchange_cpu_seconds_total'),
          };
        };
        const first = await read().catch(() => undefined);
        if (first?.n === undefined || first.cpu === undefined) return { id: p.id, cpuMs: null };
        while (Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 250));
          const now = await read().catch(() => undefined);
          if (now?.n !== undefined && now.cpu !== undefined && now.n > first.n)
            return { id: p.id, cpuMs: round(((now.cpu - first.cpu) * 1000) / (now.n - first.n), 2) };
        }
        return { id: p.id, cpuMs: null };
      }),
    );
  } finally {
    await dispatcher.destroy();
  }
}

/**
 * Waits (up to timeoutMs) until every node has built its anti-entropy trees from its store
 * (dynamo_merkle_rebuilds_total{source="store"} appears) and returns each node's age at that moment.
 */
export async function treesBuilt(
  procs: NodeProcess[],
  ca: Buffer | undefined,
  timeoutMs: number,
): Promise<Array<{ id: string; ms: number | null }>> {
  const dispatcher = new Agent({ connect: { timeout: 2_000, ...(ca ? { ca } : {}) } });
  try {
    return await Promise.all(
      procs.map(async (p) => {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          const text = await scrape(p.endpoint, dispatcher).catch(() => '');
          if (metricValue(text, 'dynamo_merkle_rebuilds_total') !== undefined) {
            const age = processAgeSeconds(p.pid);
            return { id: p.id, ms: age === undefined ? null : Math.round(age * 1000) };
          }
          await new Promise((r) => setTimeout(r, 250));
        }
        return { id: p.id, ms: null };
      }),
    );
  } finally {
    await dispatcher.destroy();
  }
}
