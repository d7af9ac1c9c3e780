#!/usr/bin/env node
/**
 * `npm run bench:anti-entropy`: the CPU cost of one anti-entropy exchange on a store of --keys objects,
 * with the ring object unchanged (gossip since 77693b5) and with a new but equal Ring object before each
 * exchange (gossip before 77693b5 built one on every heartbeat, and anti-entropy rebuilds all its trees
 * whenever membership.ring() is another object: once a scan, decode and re-hash of the whole store, now a
 * re-derivation from its in-memory key index that reads nothing from the store; "store scans" counts
 * the scans).
 *
 * Two nodes in this process, each with a real LevelDB ObjectStore in a temp dir, a Replica and an
 * AntiEntropy, connected by the in-memory transport (payloads copied through msgpack as on the wire), on a
 * static 2-member ring where both replicate every key. The load writes each key through the replica path:
 * a coordinated put on the first node, the stored object merged into the second, so both hold the same
 * bytes. CPU is process.cpuUsage() (every thread of the process: LevelDB's iterator work and GC too).
 * Flags: --keys 1000000 --rounds 3 --value-bytes 100 --tokens 256 --n 3 --depth 10 --json.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { BucketPropsTable } from '../node/src/buckets/props.js';
import type { Member, MemberState, Membership } from '../node/src/membership/membership.js';
import { AntiEntropy, type AntiEntropyRequest } from '../node/src/repair/anti-entropy.js';
import type { PutReply, ReplicaRequest } from '../node/src/replica/messages.js';
import { Replica } from '../node/src/replica/replica.js';
import { generateTokens, Ring } from '../node/src/ring/index.js';
import { ObjectStore } from '../node/src/storage/store.js';
import { InMemoryNetwork } from '../node/src/transport/memory.js';

const BUCKET = 'bench';
const TIMEOUT_MS = 600_000;
/** Keys in flight during the load: enough for the write batcher to group hundreds per LevelDB batch. */
const LOAD_CONCURRENCY = 512;
/** Unmeasured exchanges after the first one, before the "after" rounds. */
const WARMUP_EXCHANGES = 20;

/**
 * Static membership whose Ring object can be replaced by an equal one: renewRing() is what gossip did on
 * every heartbeat before 77693b5 (new Ring(members) with the same members, tokens and racks).
 */
class BenchMembership implements Membership {
  readonly cluster = 'bench';
  private current: Ring;

  constructor(
    readonly self: string,
    private readonly list: Member[],
  ) {
    this.current = new Ring(list);
  }

  renewRing(): void {
    this.current = new Ring(this.list);
  }

  ring(): Ring {
    return this.current;
  }

  pendingRing(): undefined {
    return undefined;
  }

  members(): readonly Member[] {
    return this.list;
  }

  address(id: string): string | undefined {
    return this.list.find((m) => m.id === id)?.address;
  }

  state(id: string): MemberState {
    return this.list.some((m) => m.id === id) ? 'up' : 'removed';
  }

  remove(id: string): void {
    throw new Error(`bench membership is static: cannot remove ${id}`);
  }

  learnHttp(): void {}
}

interface BenchNode {
  id: string;
  store: ObjectStore;
  replica: Replica;
  membership: BenchMembership;
  ae: AntiEntropy;
  rebuilds: number;
  storeScans: number;
  /** Divergent leaves and keys repaired of this node's last exchange. */
  last: { divergent: number; repaired: number } | undefined;
}

interface Sample {
  cpuMs: number;
  userMs: number;
  systemMs: number;
  wallMs: number;
  rebuilds: number;
  /** Rebuilds that read the whole store (the others re-derived the trees from the key index). */
  storeScans: number;
}

interface CaseResult {
  cpuMs: number;
  wallMs: number;
  rounds: Sample[];
}

const round = (v: number, digits = 3) => Math.round(v * 10 ** digits) / 10 ** digits;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number) => round(bytes / 1024 / 1024, 1);
const progress = (line: string) => process.stderr.write(`${line}\n`);

function positiveInt(name: string, raw: string | undefined): number {
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench:anti-entropy: --${name} must be a positive integer, got ${raw}`);
    process.exit(2);
  }
  return v;
}

/** Waits until the process uses under 5% of a core (LevelDB compactions after the load have finished). */
async function settle(maxMs = 120_000): Promise<number> {
  const start = performance.now();
  let quiet = 0;
  while (quiet < 2 && performance.now() - start < maxMs) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(500);
    const used = process.cpuUsage(c0);
    quiet = (used.user + used.system) / 1000 / (performance.now() - t0) < 0.05 ? quiet + 1 : 0;
  }
  return performance.now() - start;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string', default: '1000000' },
      rounds: { type: 'string', default: '3' },
      'value-bytes': { type: 'string', default: '100' },
      tokens: { type: 'string', default: '256' },
      n: { type: 'string', default: '3' },
      depth: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:anti-entropy -- [--keys 1000000] [--rounds 3] [--value-bytes 100] [--tokens 256] [--n 3] [--depth 10] [--json]\n',
    );
    return;
  }
  const keys = positiveInt('keys', values.keys);
  const rounds = positiveInt('rounds', values.rounds);
  const valueBytes = positiveInt('value-bytes', values['value-bytes']);
  const tokens = positiveInt('tokens', values.tokens);
  const n = positiveInt('n', values.n);
  const depth = positiveInt('depth', values.depth);

  const root = mkdtempSync(path.join(os.tmpdir(), 'dynamo-bench-ae-'));
  const nodes: BenchNode[] = [];
  const cleanup = () => rmSync(root, { recursive: true, force: true });
  const onSignal = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const ids = ['a', 'b'];
    const members: Member[] = ids.map((id) => ({
      id,
      address: `${id}:7070`,
      tokens: generateTokens(id, tokens),
    }));
    const network = new InMemoryNetwork();
    const log = pino({ level: 'silent' });
    for (const id of ids) {
      const store = await ObjectStore.open(path.join(root, id), { syncWrites: false });
      const props = await BucketPropsTable.load(store, { n, r: 1, w: 1, conflict: 'siblings', ttl: 0 });
      // The node's defaults (config.ts): clock pruning and sibling limits never act on this load.
      const replica = new Replica(store, props, {
        self: id,
        clockMaxEntries: 50,
        clockPruneAgeMs: 86_400_000,
        maxSiblings: 100,
      });
      const transport = network.transport(id);
      const membership = new BenchMembership(id, members);
      const node: BenchNode = {
        id,
        store,
        replica,
        membership,
        ae: undefined!,
        rebuilds: 0,
        storeScans: 0,
        last: undefined,
      };
      node.ae = new AntiEntropy({
        self: id,
        membership,
        props,
        store,
        request: (peer, req, timeoutMs) => transport.request(peer, req, timeoutMs),
        mergeLocal: (req) => replica.handle(req),
        depth,
        timeoutMs: TIMEOUT_MS,
        log,
        onExchange: (_peer, divergent, repaired) => {
          node.last = { divergent, repaired };
        },
        onRebuild: (_keys, scannedStore) => {
          node.rebuilds++;
          if (scannedStore) node.storeScans++;
        },
      });
      // As node.ts dispatches peer requests.
      await transport.listen(async (_from, body) => {
        const req = body as ReplicaRequest | AntiEntropyRequest;
        if (req.op === 'ae.root' || req.op === 'ae.children' || req.op === 'ae.keys')
          return node.ae.handle(req);
        return replica.handle(req);
      });
      nodes.push(node);
    }
    const [a, b] = nodes as [BenchNode, BenchNode];

    // Load: a client write coordinated by a, replicated to b as a merge of the stored object.
    const value = Buffer.alloc(valueBytes, 'v');
    const loadStart = performance.now();
    let next = 0;
    let reported = 0;
    await Promise.all(
      Array.from({ length: Math.min(LOAD_CONCURRENCY, keys) }, async () => {
        for (let i = next++; i < keys; i = next++) {
          const k = `k${i}`;
          const sib = {
            value,
            contentType: 'application/octet-stream',
            lastModified: Date.now(),
            deleted: false,
            expiresAt: 0,
          };
          const { obj } = (await a.replica.handle({
            op: 'put',
            b: BUCKET,
            k,
            ctx: [],
            sib,
            lww: false,
          })) as PutReply;
          await b.replica.handle({ op: 'merge', b: BUCKET, k, obj, lww: false });
          if (i >= reported + keys / 10) {
            reported = i;
            progress(`  loaded ${i} of ${keys} keys`);
          }
        }
      }),
    );
    const loadMs = performance.now() - loadStart;
    if (a.store.keyCount !== keys || b.store.keyCount !== keys)
      throw new Error(`load: stores hold ${a.store.keyCount} and ${b.store.keyCount} keys, expected ${keys}`);
    const storeBytes = await a.store.approximateBytes();
    progress(`loaded ${keys} keys into 2 stores in ${(loadMs / 1000).toFixed(1)} s; settling`);
    const settleLoadMs = await settle();

    // The initial builds, as at node start.
    const initialBuild: Sample[] = [];
    for (const node of nodes) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await node.ae.rebuild();
      const wallMs = performance.now() - t0;
      const c = process.cpuUsage(c0);
      initialBuild.push({
        cpuMs: (c.user + c.system) / 1000,
        userMs: c.user / 1000,
        systemMs: c.system / 1000,
        wallMs,
        rebuilds: 1,
        storeScans: 1,
      });
    }
    const memory = process.memoryUsage();
    progress(
      `initial builds done (${initialBuild.map((s) => `${(s.wallMs / 1000).toFixed(1)} s`).join(', ')})`,
    );

    const measure = async (renew: boolean): Promise<Sample> => {
      await settle(30_000);
      if (renew) {
        // What gossip did on every heartbeat before 77693b5 (outside the measured exchange).
        a.membership.renewRing();
        b.membership.renewRing();
      }
      const rebuildsBefore = a.rebuilds + b.rebuilds;
      const scansBefore = a.storeScans + b.storeScans;
      a.last = undefined;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const repaired = await a.ae.exchange(b.id);
      const wallMs = performance.now() - t0;
      const c = process.cpuUsage(c0);
      // (TypeScript keeps the narrowing to undefined across the await: onExchange set it meanwhile.)
      const last = a.last as BenchNode['last'];
      if (repaired !== 0 || last?.divergent !== 0)
        throw new Error(
          `exchange found differences between identical stores, or was skipped: ${JSON.stringify(last)}`,
        );
      return {
        cpuMs: (c.user + c.system) / 1000,
        userMs: c.user / 1000,
        systemMs: c.system / 1000,
        wallMs,
        rebuilds: a.rebuilds + b.rebuilds - rebuildsBefore,
        storeScans: a.storeScans + b.storeScans - scansBefore,
      };
    };
    // The first exchange after a build hashes the trees' inner nodes (computed lazily), and the first few
    // run before the JIT has optimized the exchange path: reported, but not among the "after" rounds,
    // which measure the steady state.
    const firstExchange = await measure(false);
    progress(`  first exchange after the initial builds: ${firstExchange.cpuMs.toFixed(3)} ms CPU`);
    for (let i = 0; i < WARMUP_EXCHANGES; i++) await a.ae.exchange(b.id);

    const run = async (renew: boolean, label: string): Promise<CaseResult> => {
      const samples: Sample[] = [];
      for (let r = 0; r < rounds; r++) {
        samples.push(await measure(renew));
        progress(`  ${label} round ${r + 1}: ${samples[r]!.cpuMs.toFixed(3)} ms CPU`);
      }
      return {
        cpuMs: median(samples.map((s) => s.cpuMs)),
        wallMs: median(samples.map((s) => s.wallMs)),
        rounds: samples,
      };
    };
    const after = await run(false, 'same ring object (after 77693b5)');
    const before = await run(true, 'new equal ring object (before 77693b5)');

    const result = {
      keys,
      valueBytes,
      rounds,
      tokensPerNode: tokens,
      n,
      merkleDepth: depth,
      cpus: os.cpus().length,
      node: process.version,
      loadSec: round(loadMs / 1000, 1),
      loadSettleSec: round(settleLoadMs / 1000, 1),
      storeMiB: mib(storeBytes),
      heapUsedMiBAfterInitialBuild: mib(memory.heapUsed),
      rssMiBAfterInitialBuild: mib(memory.rss),
      initialBuild: initialBuild.map((s) => ({ cpuMs: round(s.cpuMs), wallMs: round(s.wallMs) })),
      firstExchangeAfterBuild: { cpuMs: round(firstExchange.cpuMs), wallMs: round(firstExchange.wallMs) },
      after: { ...after, cpuMs: round(after.cpuMs), wallMs: round(after.wallMs) },
      before: { ...before, cpuMs: round(before.cpuMs), wallMs: round(before.wallMs) },
      cpuRatio: after.cpuMs > 0 ? round(before.cpuMs / after.cpuMs, 1) : null,
      wallRatio: after.wallMs > 0 ? round(before.wallMs / after.wallMs, 1) : null,
    };
    for (const c of [result.after, result.before])
      c.rounds = c.rounds.map((s) => ({
        cpuMs: round(s.cpuMs),
        userMs: round(s.userMs),
        systemMs: round(s.systemMs),
        wallMs: round(s.wallMs),
        rebuilds: s.rebuilds,
        storeScans: s.storeScans,
      }));

    if (values.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const out = (line = '') => process.stdout.write(`${line}\n`);
    out(
      `anti-entropy exchange, ${keys} identical keys of ${valueBytes} B on 2 nodes (n=${n}, ${tokens} tokens each, depth ${depth}), ${rounds} rounds, median`,
    );
    out(
      `load: ${result.loadSec} s for both stores (${result.storeMiB} MiB each on disk); initial build: ${result.initialBuild
        .map((s) => `${(s.cpuMs / 1000).toFixed(2)} s CPU / ${(s.wallMs / 1000).toFixed(2)} s wall`)
        .join(', ')}; heap ${result.heapUsedMiBAfterInitialBuild} MiB`,
    );
    out(
      `first exchange after the initial builds (lazy inner hashes, JIT warm-up, not counted): ${result.firstExchangeAfterBuild.cpuMs} ms CPU / ${result.firstExchangeAfterBuild.wallMs} ms wall`,
    );
    out();
    const count = (c: CaseResult, f: (s: Sample) => number) => String(c.rounds.reduce((t, r) => t + f(r), 0));
    const rows: string[][] = [
      ['case', 'CPU ms', 'wall ms', 'rebuilds', 'store scans'],
      [
        'same Ring object (after 77693b5)',
        result.after.cpuMs.toFixed(3),
        result.after.wallMs.toFixed(3),
        count(after, (r) => r.rebuilds),
        count(after, (r) => r.storeScans),
      ],
      [
        'new equal Ring (before 77693b5)',
        result.before.cpuMs.toFixed(3),
        result.before.wallMs.toFixed(3),
        count(before, (r) => r.rebuilds),
        count(before, (r) => r.storeScans),
      ],
      ['before / after', `${result.cpuRatio}x`, `${result.wallRatio}x`, '', ''],
    ];
    const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows)
      out(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const node of nodes) await node.store.close().catch(() => undefined);
    cleanup();
  }
}

main().catch((err) => {
  console.error(`bench:anti-entropy: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
