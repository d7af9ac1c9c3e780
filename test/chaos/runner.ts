/**
 * Runs one seeded fault schedule against 5 real node processes in network namespaces (and a spare that
 * joins and leaves) under the set workload, measures how long the cluster takes to converge after each
 * fault, heals everything, waits for convergence and checks every acknowledged write and delete.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CheckResult, check } from './checker.js';
import { NetnsCluster } from './netns.js';
import { Prng } from './prng.js';
import { describeSchedule, type Fault, type FaultKind, generateSchedule } from './schedule.js';
import { HOT_BUCKET, type OpStats, SetWorkload } from './workload.js';

export interface RunOptions {
  seed: number;
  /** 'lww' runs the hot keys in a last-writer-wins bucket, where concurrent adds must get lost. */
  mode: 'siblings' | 'lww';
  faults: number;
  kinds?: readonly FaultKind[];
  /** Each of kinds exactly once (faults is ignored). */
  everyKind?: boolean;
  nodes?: number;
  maxHoldMs?: number;
  convergeTimeoutMs?: number;
  /** Extra flags for every node. */
  args?: string[];
  /** Mutual TLS between the nodes (signed gossip); see NetnsCluster's tls option. */
  tls?: boolean;
  log?: (line: string) => void;
}

export interface RunResult {
  seed: number;
  mode: 'siblings' | 'lww';
  schedule: string;
  faultsByKind: Partial<Record<FaultKind, number>>;
  adds: OpStats;
  blinds: OpStats;
  duringFaults: OpStats;
  deletes: OpStats;
  ackedAdds: number;
  ackedBlind: number;
  /** Acknowledged deletes that covered their key's value (the keys must read 404). */
  ackedDeletes: number;
  /** Acknowledged deletes sent without a context (their values must survive). */
  uncoveredDeletes: number;
  /** Acknowledged deletes whose context was not known to cover the value (not checked). */
  unknownDeletes: number;
  check: CheckResult;
  /** Per fault, in schedule order: time from its undo until the cluster converged (see converge()). */
  faults: FaultConvergence[];
  /** From the heal until every acknowledged write was found (or the timeout). */
  convergeMs: number;
  converged: boolean;
  crashes: string[];
  /** Faults that could not be applied or undone (a restart that failed, ...). */
  errors: string[];
  /** Where the nodes' output was saved, when the run broke a promise. */
  logsDir?: string;
}

export interface FaultConvergence {
  kind: FaultKind;
  /**
   * From the start of the fault's undo (heal, restart, decommission, ...) until every member was ready
   * with no hint pending, or the timeout (CONVERGE_TIMEOUT_MS after the undo ended).
   */
  ms: number;
  /** How long the undo itself took (a restart waits for /ready, a decommission until the node left). */
  undoMs: number;
  converged: boolean;
}

/** How long a fault's convergence is waited for (the schedule then goes on) and how often it is polled. */
const CONVERGE_TIMEOUT_MS = 30_000;
const CONVERGE_POLL_MS = 300;

const NODE_FLAGS = [
  ...['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'],
  ...['--request-timeout-ms', '2000', '--anti-entropy-interval-ms', '1000'],
];

/** Undoes a fault. */
type Undo = () => Promise<void>;

/** The members clients use, and the cluster and workload a fault acts on. */
interface World {
  c: NetnsCluster;
  w: SetWorkload;
  /** Node indices that are members (as the test knows them): the workload and the checks use these. */
  active: Set<number>;
  log: (line: string) => void;
  /** Work an undo left running that is no part of the cluster's convergence (a left node stopping). */
  background: Array<Promise<unknown>>;
}

async function until(what: string, ok: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ok().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(200);
  }
}

interface RingMember {
  id: string;
  address: string;
  http: string | null;
  state: string;
}

async function ringMembers(url: string): Promise<RingMember[]> {
  const res = await fetch(`${url}/admin/ring`, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`GET /admin/ring: ${res.status}`);
  return ((await res.json()) as { members: RingMember[] }).members;
}

async function post(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { method: 'POST', signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

/** Members other than i whose process runs. */
const othersOf = ({ c, active }: World, i: number) => [...active].filter((j) => j !== i && c.running(j));

/**
 * remove-restart: kill -9 node i, remove it once a member holds it down; undone by restarting it on its
 * old data (it must refuse, naming removed_member), then on a wiped data directory (it joins again).
 */
async function removeRestart(world: World, i: number): Promise<Undo> {
  const { c, active, log } = world;
  const id = c.nodes[i]!.id;
  await c.kill(i);
  const via = othersOf(world, i)[0];
  if (via === undefined) throw new Error(`no member left to remove ${id} through`);
  await until(
    `${c.nodes[via]!.id} to hold ${id} down`,
    async () => (await ringMembers(c.url(via))).find((m) => m.id === id)?.state === 'down',
    20_000,
  );
  active.delete(i);
  const removed = await post(`${c.url(via)}/admin/members/${id}/remove`);
  if (removed.status !== 200) {
    active.add(i);
    throw new Error(`POST /admin/members/${id}/remove: ${removed.status} ${removed.body}`);
  }
  log(`  ${id} removed through ${c.nodes[via]!.id}`);
  return async () => {
    await until(
      `every member to drop ${id} from its ring`,
      async () => {
        for (const j of othersOf(world, i))
          if ((await ringMembers(c.url(j))).some((m) => m.id === id)) return false;
        return true;
      },
      15_000,
    );
    let refusal = '';
    try {
      const r = await c.startRefused(i);
      const tail = r.output.trim().split('\n').slice(-2).join(' / ').slice(0, 300);
      if (r.code === 0 || !/removed_member|was removed/.test(r.output))
        refusal = `${id} on its old data exited ${r.signal ?? r.code} without naming removed_member: ${tail}`;
      else {
        const why = r.output.split('\n').find((l) => /removed_member|was removed/.test(l)) ?? tail;
        log(`  ${id} refused its old data (exit ${r.code}): ${why.slice(0, 120)}`);
      }
    } catch (err) {
      refusal = (err as Error).message;
    }
    // Whatever it did, it joins again on an empty data directory, so the schedule goes on.
    await c.wipe(i);
    await c.startNode(i);
    active.add(i);
    log(`  ${id} joined again on a wiped data directory`);
    if (refusal) throw new Error(refusal);
  };
}

/**
 * join-decommission: the spare s joins (streams, gets ready) and takes client requests; undone by
 * decommissioning it (retried while another move is under way: 409) until it has left, then stopping it.
 */
async function joinDecommission(world: World, s: number): Promise<Undo> {
  const { c, active, log } = world;
  const id = c.nodes[s]!.id;
  // A fresh data directory each time: a node that left refuses to start on its old one.
  await c.wipe(s);
  const joinStart = Date.now();
  await c.startNode(s);
  active.add(s);
  log(`  ${id} joined and ready in ${((Date.now() - joinStart) / 1000).toFixed(1)} s`);
  return async () => {
    const started = Date.now();
    await until(
      `${id} to accept its decommission`,
      async () => {
        const r = await post(`${c.url(s)}/admin/decommission`);
        if (r.status === 202) return true;
        if (r.status !== 409) throw new Error(`POST /admin/decommission: ${r.status} ${r.body}`);
        return false;
      },
      60_000,
    );
    await until(
      `${id} to have left`,
      async () => {
        const res = await fetch(`${c.url(s)}/admin/status`, { signal: AbortSignal.timeout(2000) });
        return ((await res.json()) as { state: string }).state === 'left';
      },
      60_000,
    );
    active.delete(s);
    const left = Date.now();
    log(`  ${id} decommissioned (left) in ${((left - started) / 1000).toFixed(1)} s`);
    // It is no member any more: its graceful stop (up to 5 s for open connections) is awaited before the
    // next fault, not counted in the cluster's convergence.
    world.background.push(
      c
        .kill(s, 'SIGTERM')
        .then(() => log(`  ${id} stopped ${((Date.now() - left) / 1000).toFixed(1)} s after it left`)),
    );
  };
}

/**
 * address-change: kill node i and restart it, on its data, at a new address in its namespace (the old
 * one gone); undone by checking that every member knows it there and writes were acknowledged through it.
 */
async function addressChange(world: World, i: number): Promise<Undo> {
  const { c, w, log } = world;
  const node = c.nodes[i]!;
  const before = node.address;
  await c.kill(i);
  const address = c.moveAddress(i);
  await c.startNode(i);
  log(`  ${node.id} moved from ${before} to ${address}`);
  const acked = w.ackedBy[i]!;
  return async () => {
    await until(
      `every member to route to ${node.id} at ${address}`,
      async () => {
        for (const j of othersOf(world, i)) {
          const m = (await ringMembers(c.url(j))).find((x) => x.id === node.id);
          if (m?.address !== `${address}:7070` || m.http !== node.url || m.state !== 'up') return false;
        }
        return true;
      },
      15_000,
    );
    if (w.ackedBy[i] === acked) throw new Error(`no write acknowledged through ${node.id} at ${address}`);
  };
}

async function apply(world: World, f: Fault): Promise<Undo> {
  const { c, w } = world;
  const heal = async () => c.heal();
  const restart = (nodes: number[]) => async () => {
    await Promise.all(nodes.map((i) => c.startNode(i)));
  };
  switch (f.kind) {
    case 'partition-halves':
    case 'partition-isolate':
      c.partition(f.nodes, f.others);
      return heal;
    case 'partition-ring': {
      const n = f.nodes.length;
      const pairs: Array<[number, number]> = [];
      for (let a = 0; a < n; a++)
        for (let b = a + 1; b < n; b++)
          if (b - a !== 1 && b - a !== n - 1) pairs.push([f.nodes[a]!, f.nodes[b]!]);
      c.cut(pairs);
      return heal;
    }
    case 'partition-bridge':
      c.partition(f.nodes.slice(1), f.others);
      return heal;
    case 'kill-one':
    case 'kill-two':
    case 'kill-seeds':
      await Promise.all(f.nodes.map((i) => c.kill(i)));
      return restart(f.nodes);
    case 'kill-busiest': {
      const i = w.busiest();
      f.nodes = [i];
      await c.kill(i);
      return restart([i]);
    }
    case 'pause':
      c.pause(f.nodes[0]!);
      return async () => c.resume(f.nodes[0]!);
    case 'wipe':
      await c.wipe(f.nodes[0]!);
      return restart(f.nodes);
    case 'skew': {
      const i = f.nodes[0]!;
      await c.kill(i);
      await c.startNode(i, { skewSeconds: f.skewSeconds });
      return async () => {
        await c.kill(i);
        await c.startNode(i);
      };
    }
    case 'remove-restart':
      return removeRestart(world, f.nodes[0]!);
    case 'join-decommission':
      return joinDecommission(world, f.nodes[0]!);
    case 'address-change':
      return addressChange(world, f.nodes[0]!);
  }
}

/** Sum of dynamo_hints_pending over the /metrics of url (every target). */
async function hintsPending(url: string): Promise<number> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) });
  let sum = 0;
  for (const line of (await res.text()).split('\n'))
    if (/^dynamo_hints_pending[{ ]/.test(line)) sum += Number(line.split(' ').pop());
  return sum;
}

/** True when every member runs, answers /ready, and no member holds a hint. */
async function convergedNow({ c, active }: World): Promise<boolean> {
  const members = [...active];
  if (!members.every((i) => c.running(i))) return false;
  const ready = await Promise.all(
    members.map(async (i) => {
      try {
        return (await fetch(`${c.url(i)}/ready`, { signal: AbortSignal.timeout(1000) })).ok;
      } catch {
        return false;
      }
    }),
  );
  if (!ready.every(Boolean)) return false;
  const hints = await Promise.all(members.map((i) => hintsPending(c.url(i)).catch(() => Number.NaN)));
  return hints.reduce((a, b) => a + b, 0) === 0;
}

/** Polls convergedNow until it holds or the timeout: the time it took, and whether it did. */
async function converge(
  world: World,
  timeoutMs = CONVERGE_TIMEOUT_MS,
): Promise<{ ms: number; converged: boolean }> {
  const start = Date.now();
  for (;;) {
    if (await convergedNow(world)) return { ms: Date.now() - start, converged: true };
    if (Date.now() - start >= timeoutMs) return { ms: Date.now() - start, converged: false };
    await sleep(CONVERGE_POLL_MS);
  }
}

export async function runSchedule(opts: RunOptions): Promise<RunResult> {
  const log = opts.log ?? (() => undefined);
  const nodes = opts.nodes ?? 5;
  const faults = generateSchedule(opts.seed, {
    nodes,
    faults: opts.faults,
    ...(opts.kinds ? { kinds: opts.kinds } : {}),
    ...(opts.everyKind ? { everyKind: true } : {}),
    maxHoldMs: opts.maxHoldMs ?? 5000,
  });
  const schedule = describeSchedule(faults);
  log(`seed ${opts.seed} (${opts.mode}): ${schedule}`);
  const errors: string[] = [];
  // One spare namespace, for the node join-decommission adds (n6 of 5).
  const c = await NetnsCluster.start(nodes, [...NODE_FLAGS, ...(opts.args ?? [])], {
    spares: 1,
    ...(opts.tls ? { tls: true } : {}),
  });
  try {
    if (opts.mode === 'lww') {
      const res = await fetch(`${c.url(0)}/buckets/${HOT_BUCKET}/props`, {
        method: 'PUT',
        body: JSON.stringify({ conflict: 'lww' }),
      });
      if (!res.ok) throw new Error(`setting lww props: ${res.status} ${await res.text()}`);
    }
    const active = new Set(Array.from({ length: nodes }, (_, i) => i));
    const endpoints = {
      active: () => [...active].sort((a, b) => a - b),
      url: (i: number) => c.url(i),
      size: c.nodes.length,
    };
    const w = new SetWorkload(endpoints, new Prng(opts.seed ^ 0x5eed), {
      clients: 6,
      hotKeys: 3,
      blindShare: 0.25,
      deleteShare: 0.2,
      uncoveredShare: 0.2,
      // The self-check: deletes that did not cover their value count as acknowledged (they must come back).
      misclassifyUncovered: opts.mode === 'lww',
      strictShare: 0.2,
      timeoutMs: 5000,
    });
    const world: World = { c, w, active, log, background: [] };
    const convergence: FaultConvergence[] = [];
    w.start();
    await sleep(1500);
    for (const f of faults) {
      let undo: Undo | undefined;
      try {
        w.faultActive = true;
        undo = await apply(world, f);
        await sleep(f.holdMs);
      } catch (err) {
        errors.push(`${f.kind}: ${(err as Error).message.slice(0, 300)}`);
      }
      const undoStart = Date.now();
      try {
        await undo?.();
      } catch (err) {
        errors.push(`undo ${f.kind}: ${(err as Error).message.slice(0, 300)}`);
      }
      w.faultActive = false;
      const undoMs = Date.now() - undoStart;
      const conv = await converge(world);
      convergence.push({ kind: f.kind, ms: undoMs + conv.ms, undoMs, converged: conv.converged });
      log(
        `  ${f.kind}: ${conv.converged ? 'converged' : 'NOT converged'} ${((undoMs + conv.ms) / 1000).toFixed(1)} s after its undo began (undo ${(undoMs / 1000).toFixed(1)} s)`,
      );
      // The quiet gap after the fault runs from its undo: waiting for convergence was part of it.
      await sleep(Math.max(0, f.gapMs - conv.ms));
      await Promise.all(world.background.splice(0));
    }
    await sleep(1000);
    await w.stop();
    // Heal whatever is left: routes, paused and stopped members.
    c.heal();
    for (const i of active) c.resume(i);
    for (const i of active) {
      if (c.running(i)) continue;
      try {
        await c.startNode(i);
      } catch (err) {
        errors.push(`final restart of n${i + 1}: ${(err as Error).message.slice(0, 300)}`);
      }
    }
    const healed = Date.now();
    const urls = [...active].sort((a, b) => a - b).map((i) => c.url(i));
    // In lww mode losses are expected and never heal: a short wait for hints is enough.
    const deadline = healed + (opts.convergeTimeoutMs ?? (opts.mode === 'lww' ? 5000 : 60_000));
    const unsettled = (r: CheckResult) =>
      r.lostAdds + r.lostBlind + r.lostKept + r.resurrected + r.readErrors;
    let result = await check(urls, w);
    while (unsettled(result) > 0 && Date.now() < deadline) {
      await sleep(1000);
      result = await check(urls, w);
    }
    const converged = unsettled(result) === 0;
    const faultsByKind: Partial<Record<FaultKind, number>> = {};
    for (const f of faults) faultsByKind[f.kind] = (faultsByKind[f.kind] ?? 0) + 1;
    const out: RunResult = {
      seed: opts.seed,
      mode: opts.mode,
      schedule,
      faultsByKind,
      adds: w.adds,
      blinds: w.blinds,
      duringFaults: w.duringFaults,
      deletes: w.deletes,
      ackedAdds: [...w.acked.values()].reduce((n, s) => n + s.size, 0),
      ackedBlind: w.blind.size,
      ackedDeletes: opts.mode === 'lww' ? w.deleted.size - w.uncoveredDeletes : w.deleted.size,
      uncoveredDeletes: w.uncoveredDeletes,
      unknownDeletes: w.unknownDeletes,
      check: result,
      faults: convergence,
      convergeMs: Date.now() - healed,
      converged,
      crashes: c.nodes.flatMap((n) => n.crashes.map((x) => `${n.id}: ${x}`)),
      errors,
    };
    if (failures(out).length > 0) {
      // The nodes' own account of it, every start of each: kept for the report.
      out.logsDir = mkdtempSync(join(tmpdir(), `dynamo-chaos-${opts.seed}-${opts.mode}-`));
      for (const n of c.nodes)
        if (n.output.length > 0) writeFileSync(join(out.logsDir, `${n.id}.log`), n.output.join(''));
    }
    return out;
  } finally {
    await c.stop();
  }
}

/** A result's failures: empty when it kept every promise (for lww: when the checker saw losses). */
export function failures(r: RunResult): string[] {
  const out: string[] = [];
  if (r.mode === 'lww') {
    if (r.check.lostAdds === 0) out.push('lww: the checker saw no lost add (it must: concurrent adds race)');
    // Deletes that did not cover their value were counted as acknowledged: their values must be seen.
    if (r.check.resurrected === 0)
      out.push('self-check: the checker saw no resurrected delete (it must: uncovered deletes were counted)');
  } else {
    if (r.check.lostAdds > 0) out.push(`${r.check.lostAdds} acknowledged adds lost`);
    if (r.check.resurrected > 0) out.push(`${r.check.resurrected} acknowledged deletes resurrected`);
  }
  // Blind writes and the delete bucket are siblings buckets in both modes.
  if (r.check.lostBlind > 0) out.push(`${r.check.lostBlind} acknowledged blind writes lost`);
  if (r.check.lostKept > 0) out.push(`${r.check.lostKept} acknowledged values lost from the delete bucket`);
  if (r.check.unexpected > 0) out.push(`${r.check.unexpected} unexpected elements`);
  if (r.check.readErrors > 0) out.push(`${r.check.readErrors} reads failed after the heal`);
  if (r.crashes.length > 0) out.push(`crashes: ${r.crashes.join(', ')}`);
  const serverErrors = r.adds.serverErrors + r.blinds.serverErrors + r.deletes.serverErrors;
  if (serverErrors > 0) out.push(`${serverErrors} 5xx answers other than 503`);
  if (r.errors.length > 0) out.push(`faults not applied: ${r.errors.join('; ')}`);
  if (out.length > 0) {
    out.push(`replay: npm run chaos -- --seed ${r.seed} --schedules 1${r.mode === 'lww' ? ' --lww' : ''}`);
    if (r.logsDir) out.push(`node logs: ${r.logsDir}`);
  }
  return out;
}

const pct = (s: OpStats) =>
  s.attempted === 0 ? '-' : `${((100 * s.acknowledged) / s.attempted).toFixed(0)}%`;

/** A table of results, one row per schedule. */
export function table(results: RunResult[]): string {
  const head =
    '| seed | mode | faults | adds acked | adds lost | blind acked | blind lost | deletes acked (+no context) | resurrected | kept lost | avail. in faults | converge s | siblings left | crashes | 5xx≠503 |';
  const rows = results.map((r) =>
    [
      r.seed,
      r.mode,
      Object.entries(r.faultsByKind)
        .map(([k, n]) => `${k}${n > 1 ? `×${n}` : ''}`)
        .join(' '),
      r.ackedAdds,
      r.check.lostAdds,
      r.ackedBlind,
      r.check.lostBlind,
      `${r.ackedDeletes} (+${r.uncoveredDeletes})`,
      r.check.resurrected,
      r.check.lostKept,
      pct(r.duringFaults),
      (r.convergeMs / 1000).toFixed(1) + (r.converged ? '' : ' (timeout)'),
      r.check.siblingsLeft,
      r.crashes.length,
      r.adds.serverErrors + r.blinds.serverErrors + r.deletes.serverErrors,
    ].join(' | '),
  );
  return [head, `|${' --- |'.repeat(15)}`, ...rows.map((r) => `| ${r} |`)].join('\n');
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const seconds = (ms: number) => (ms / 1000).toFixed(1);

/**
 * Per fault kind, over every schedule: how many, the median and longest time from the start of the
 * undo until converged (a timeout counts as the time waited), the timeouts, and how long the undo took.
 */
export function convergenceTable(results: RunResult[]): string {
  const byKind = new Map<FaultKind, FaultConvergence[]>();
  for (const r of results) for (const f of r.faults) byKind.set(f.kind, [...(byKind.get(f.kind) ?? []), f]);
  const head = '| fault kind | count | converged: median s | max s | timeouts | undo: median s | max s |';
  const rows = [...byKind.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, fs]) => {
      const ms = fs.map((f) => f.ms);
      const undo = fs.map((f) => f.undoMs);
      const timeouts = fs.filter((f) => !f.converged).length;
      return `| ${kind} | ${fs.length} | ${seconds(median(ms))} | ${seconds(Math.max(...ms))} | ${timeouts} | ${seconds(median(undo))} | ${seconds(Math.max(...undo))} |`;
    });
  return [head, `|${' --- |'.repeat(7)}`, ...rows].join('\n');
}
