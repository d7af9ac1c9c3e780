/**
 * Real node processes on loopback for integration tests: start a cluster from the built CLI,
 * kill and restart nodes, and clean up data directories afterwards.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const CLI = resolve(import.meta.dirname, '../../dist/node/src/cli/main.js');

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

/** Whether a port on 127.0.0.1 can be bound right now. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/** Ports 20000-31999 (below the kernel's ephemeral range, 32768+) in one slice per vitest worker. */
const PORT_SLICE = 2000;
const PORT_SLICES = 6;
const poolSlice = (Number(process.env.VITEST_POOL_ID ?? 1) - 1) % PORT_SLICES;

/**
 * The first of `count` consecutive free ports. Each test worker draws from its own slice: a port free
 * now may be bound later (a restarted node takes its old port again), and no other worker's test can
 * have taken it meanwhile; connections' ephemeral ports are above the slices.
 */
export async function freePortRange(count: number): Promise<number> {
  for (;;) {
    const base = 20_000 + poolSlice * PORT_SLICE + Math.floor(Math.random() * (PORT_SLICE - count));
    let free = true;
    // A port handed out before is taken even when nothing listens on it yet (a node not started).
    for (let p = base; p < base + count && free; p++) free = !handedOut.has(p) && (await portIsFree(p));
    if (free) {
      for (let p = base; p < base + count; p++) handedOut.add(p);
      return base;
    }
  }
}
const handedOut = new Set<number>();

export interface TestNode {
  id: string;
  url: string;
  httpPort: number;
  peerPort: number;
  dataDir: string;
  proc?: ChildProcess;
  output: string[];
  /** The loopback address the node listens on (default 127.0.0.1). */
  host?: string;
}

/** A fetch: the global one, or one that adds a CA and a token (clusters with TLS and auth). */
export type Fetch = (url: string, init?: RequestInit) => Promise<Response>;

/** Sum of the samples on the metric lines matching line, over the /metrics of the given node URLs (0 if none). */
export async function metric(urls: string | string[], line: RegExp, fetcher: Fetch = fetch): Promise<number> {
  let sum = 0;
  for (const url of Array.isArray(urls) ? urls : [urls]) {
    const text = await (await fetcher(`${url}/metrics`)).text();
    for (const l of text.split('\n')) if (line.test(l)) sum += Number(l.split(' ').pop());
  }
  return sum;
}

/**
 * A key's values read through url: one for 200, every sibling (decoded) for 300, none otherwise, with
 * the status and, for any other answer, its body.
 */
export async function readValues(
  url: string,
  bucket: string,
  key: string,
  query = '',
  fetcher: Fetch = fetch,
): Promise<{ status: number; values: string[]; body?: string }> {
  const res = await fetcher(`${url}/buckets/${bucket}/keys/${key}${query}`, {
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status === 200) return { status: 200, values: [await res.text()] };
  if (res.status === 300) {
    const body = (await res.json()) as { siblings: Array<{ value: string }> };
    return { status: 300, values: body.siblings.map((s) => Buffer.from(s.value, 'base64').toString()) };
  }
  return { status: res.status, values: [], body: await res.text() };
}

/** Flags that make tombstones reapable, and hints expire, within a test: 1 s grace, reaper every 200 ms. */
export const QUICK_REAP = [
  '--tombstone-grace-ms',
  '1000',
  '--hint-window-ms',
  '1000',
  '--tombstone-reap-interval-ms',
  '200',
];

/** The node's lifecycle state from GET /admin/status: joining, up, leaving, left, rebuilding. */
export async function nodeState(url: string): Promise<string> {
  return ((await (await fetch(`${url}/admin/status`)).json()) as { state: string }).state;
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Runs command args as node's process, keeping its output in node.output, and resolves with it once
 * url answers 2xx; rejects at once, with what it printed, if the process exits first.
 */
export async function spawnNode(
  node: { id: string; output: string[] },
  command: string,
  args: string[],
  url: string,
  timeoutMs = 15_000,
): Promise<ChildProcess> {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (b: Buffer) => node.output.push(b.toString());
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  let started = false;
  const exited = new Promise<never>((_, reject) =>
    proc.once('close', () => {
      if (!started) reject(new Error(`${node.id} exited: ${node.output.join('')}`));
    }),
  );
  const what = `${node.id} answering ${new URL(url).pathname}`;
  const answers = async () => (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;
  await Promise.race([waitFor(what, answers, timeoutMs), exited]);
  started = true;
  return proc;
}

async function newNode(root: string, id: string): Promise<TestNode> {
  const [httpPort, peerPort] = [await freePortRange(1), await freePortRange(1)];
  return { id, httpPort, peerPort, url: `http://127.0.0.1:${httpPort}`, dataDir: join(root, id), output: [] };
}

export class TestCluster {
  private constructor(
    readonly nodes: TestNode[],
    private readonly root: string,
    private readonly args: string[],
    private readonly gossip: boolean,
    /** Flags of one node only (its own certificate, ...), by id. */
    private readonly perNode: (id: string) => string[] = () => [],
  ) {}

  /** Starts `count` nodes with static membership of all of them; resolves when every one is ready. */
  static async start(
    count: number,
    args: string[] = [],
    options: { gossip?: boolean; perNode?: (id: string) => string[] } = {},
  ): Promise<TestCluster> {
    if (!existsSync(CLI)) throw new Error(`${CLI} missing: run npm run build first (npm test does)`);
    const root = mkdtempSync(join(tmpdir(), 'dynamo-it-'));
    const nodes: TestNode[] = [];
    for (let i = 0; i < count; i++) nodes.push(await newNode(root, `n${i + 1}`));
    const cluster = new TestCluster(nodes, root, args, options.gossip ?? false, options.perNode);
    try {
      if (cluster.gossip) {
        // The first node is the seed and founds the cluster (--bootstrap, on this first start only);
        // the others join through it.
        await cluster.startNode(0, true, { args: ['--bootstrap'] });
        await Promise.all(nodes.slice(1).map((_, i) => cluster.startNode(i + 1)));
      } else await Promise.all(nodes.map((_, i) => cluster.startNode(i)));
    } catch (err) {
      // The caller never gets the cluster to stop: stop the nodes that did start.
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /**
   * Adds node n<count+1> and starts it (gossip: it joins through the seed); resolves with its index
   * once it answers /health, or /ready when ready is true.
   */
  async addNode(ready = false): Promise<number> {
    const i = this.nodes.length;
    this.nodes.push(await newNode(this.root, `n${i + 1}`));
    await this.startNode(i, ready);
    return i;
  }

  url(i: number): string {
    return this.nodes[i]!.url;
  }

  /**
   * Starts (or restarts) node i and waits until it answers /ready (or only /health: ready false). With
   * host, the node moves to that loopback address (127.x.y.z) for good, as a rescheduled pod gets a new IP;
   * args are extra flags for this start; prefix runs the node under a command (e.g. env VAR=value).
   */
  async startNode(
    i: number,
    ready = true,
    { host, args: extra = [], prefix = [] }: { host?: string; args?: string[]; prefix?: string[] } = {},
  ): Promise<void> {
    const node = this.nodes[i]!;
    if (host) {
      node.host = host;
      node.url = `http://${host}:${node.httpPort}`;
    }
    const at = node.host ?? '127.0.0.1';
    const members = this.nodes.map((n) => `${n.id}=127.0.0.1:${n.peerPort}`).join(',');
    const membership = this.gossip
      ? [
          ...['--seeds', `${this.nodes[0]!.host ?? '127.0.0.1'}:${this.nodes[0]!.peerPort}`],
          ...['--advertise', `${at}:${node.peerPort}`],
          // Joins wait this long for writes routed by the old ring; a test cluster has none in flight.
          ...['--ring-settle-ms', '300'],
        ]
      : ['--members', members];
    const args = [CLI, 'node', '--node-id', node.id, ...membership, '--data-dir', node.dataDir];
    args.push('--http-host', at, '--http-port', String(node.httpPort), '--advertise-http', node.url);
    args.push('--peer-host', at, '--peer-port', String(node.peerPort));
    args.push('--tokens', '64', '--log-level', 'warn', ...this.args, ...this.perNode(node.id), ...extra);
    const [command, ...before] = [...prefix, process.execPath];
    node.proc = await spawnNode(
      node,
      command!,
      [...before, ...args],
      `${node.url}/${ready ? 'ready' : 'health'}`,
    );
  }

  /** Sends a signal to node i and waits for the process to exit. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.nodes[i]!.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await exited;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.kill(i, 'SIGKILL')));
    rmSync(this.root, { recursive: true, force: true });
  }
}
