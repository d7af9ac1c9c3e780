/**
 * Starts a throwaway local cluster for the benchmark: `dynamo local` as a child process on free ports, with
 * its data and log in a fresh temp directory, waited on until every node answers GET /ready. The child
 * runs in its own process group so stop() (and, as a last resort, process exit) can take down every node.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { childPids, commandLineFlag, processAgeSeconds } from './proc.js';

/** The server CLI as built by `npm run build` (dist/bench/ → dist/node/src/cli/main.js). */
export const SERVER_CLI = fileURLToPath(new URL('../node/src/cli/main.js', import.meta.url));

export interface LocalClusterOptions {
  nodes: number;
  /** `dynamo local --insecure`: no TLS and no client tokens (to measure what security costs). */
  insecure?: boolean;
  /** How long every node gets to answer GET /ready with 200. */
  readyTimeoutMs?: number;
  /** Aborting gives up waiting for readiness (the cluster is then stopped). */
  signal?: AbortSignal;
  cli?: string;
}

/** One node process of a local cluster. */
export interface NodeProcess {
  id: string;
  pid: number;
  endpoint: string;
}

/** How long a node process took, from its start, to answer GET /health and GET /ready with 200. */
export interface NodeStartTimes {
  id: string;
  healthMs: number | null;
  readyMs: number | null;
}

export interface LocalCluster {
  readonly nodes: number;
  readonly endpoints: string[];
  readonly httpPort: number;
  readonly peerPort: number;
  readonly root: string;
  /** The admin token `dynamo local` made (its API requires one unless insecure). */
  readonly token: string | undefined;
  /** The local CA clients trust (PEM), unless insecure. */
  readonly ca: Buffer | undefined;
  /** Start times of every node at the last (re)start (null off Linux, where /proc is missing). */
  readonly startTimes: NodeStartTimes[];
  /** The node processes `dynamo local` runs (its children), by node id; empty off Linux. */
  nodeProcesses(): NodeProcess[];
  /** Stops every node (as Ctrl-C does) and starts them again on the same data; resolves once all are ready. */
  restart(): Promise<void>;
  /** Stops every node (SIGTERM, then SIGKILL to the group) and removes the temp directory. */
  stop(): Promise<void>;
}

const running = new Set<LocalClusterProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when the benchmark exits without stopping a cluster (uncaught error, process.exit).
  process.on('exit', () => {
    for (const cluster of running) cluster.killNow();
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    // No host: binding the unspecified address conflicts with a listener on any local address.
    server.listen({ port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** The first of `count` consecutive ports that are free right now, from a random high base. */
export async function findFreePortRange(count: number, attempts = 50): Promise<number> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (40_000 - count));
    let free = true;
    for (let port = base; port < base + count && free; port++) free = await portIsFree(port);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports found after ${attempts} attempts`);
}

/** Spawns `dynamo local` with args in its own process group, its output appended to logFile. */
function spawnLocal(args: string[], logFile: string): ChildProcess {
  const log = openSync(logFile, 'a');
  try {
    return spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
}

class LocalClusterProcess implements LocalCluster {
  private stopping: Promise<void> | undefined;
  exited!: Promise<string>;
  token: string | undefined;
  ca: Buffer | undefined;
  startTimes: NodeStartTimes[] = [];

  constructor(
    readonly nodes: number,
    readonly endpoints: string[],
    readonly httpPort: number,
    readonly peerPort: number,
    readonly root: string,
    readonly logFile: string,
    private child: ChildProcess,
    private readonly args: string[],
    private readonly readyTimeoutMs: number,
  ) {
    this.watch(child);
  }

  private watch(child: ChildProcess): void {
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`));
      child.once('error', (err) => resolve(`spawn failed: ${err.message}`));
    });
  }

  nodeProcesses(): NodeProcess[] {
    if (this.child.pid === undefined) return [];
    const found: NodeProcess[] = [];
    for (const pid of childPids(this.child.pid)) {
      const id = commandLineFlag(pid, '--node-id');
      const i = id === undefined ? -1 : Number(id.slice(1)) - 1;
      const endpoint = this.endpoints[i];
      if (id && endpoint) found.push({ id, pid, endpoint });
    }
    return found.sort((a, b) => a.endpoint.localeCompare(b.endpoint, 'en', { numeric: true }));
  }

  async restart(): Promise<void> {
    if (this.alive) {
      this.child.kill('SIGTERM');
      if (!(await settlesWithin(this.exited, 60_000))) throw new Error('the local cluster did not stop');
    }
    this.watch(spawnLocal(this.args, this.logFile));
    await waitForReady(this, this.readyTimeoutMs, undefined);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  private killGroup(signal: NodeJS.Signals): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // ESRCH: the group is already gone.
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.alive) {
        this.child.kill('SIGTERM');
        if (!(await settlesWithin(this.exited, 15_000))) {
          this.killGroup('SIGKILL');
          await settlesWithin(this.exited, 3_000);
        }
      }
      this.killGroup('SIGKILL'); // node processes the CLI may have left behind
      running.delete(this);
      await rm(this.root, { recursive: true, force: true, maxRetries: 3 });
    })();
    return this.stopping;
  }

  /** Synchronous kill and cleanup for the process 'exit' hook. */
  killNow(): void {
    this.killGroup('SIGKILL');
    try {
      rmSync(this.root, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** Polls GET /ready on every endpoint until all answer 200; fails early if the cluster process exits. */
async function waitForReady(
  cluster: LocalClusterProcess,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  // Over TLS, the local CA dynamo local makes as it starts; polled for until it exists.
  const caFile = path.join(cluster.root, 'data', 'tls', 'ca.crt');
  let agent: Agent | undefined = cluster.endpoints[0]!.startsWith('https:')
    ? undefined
    : new Agent({ connect: { timeout: 1_000 } });
  let exitReason: string | undefined;
  void cluster.exited.then((reason) => {
    exitReason = reason;
  });
  const pending = new Set(cluster.endpoints);
  // Per endpoint: the node's age when it first answered /health and /ready (its own start, not ours).
  const times = new Map<string, NodeStartTimes>(
    cluster.endpoints.map((e, i) => [e, { id: `n${i + 1}`, healthMs: null, readyMs: null }]),
  );
  cluster.startTimes = [...times.values()];
  const age = (endpoint: string) => {
    const pid = cluster.nodeProcesses().find((p) => p.endpoint === endpoint)?.pid;
    const seconds = pid === undefined ? undefined : processAgeSeconds(pid);
    return seconds === undefined ? null : Math.round(seconds * 1000);
  };
  const deadline = Date.now() + timeoutMs;
  try {
    while (pending.size > 0) {
      if (signal?.aborted) throw new Error('interrupted while waiting for the cluster');
      if (exitReason !== undefined)
        throw new Error(`cluster process ended before it was ready (${exitReason})`);
      if (Date.now() > deadline) {
        throw new Error(`not ready after ${timeoutMs / 1000} s: ${[...pending].join(', ')}`);
      }
      if (!agent && existsSync(caFile)) {
        cluster.ca = readFileSync(caFile);
        agent = new Agent({ connect: { timeout: 1_000, ca: cluster.ca } });
      }
      for (const endpoint of agent ? [...pending] : []) {
        const t = times.get(endpoint)!;
        try {
          const path = t.healthMs === null ? '/health' : '/ready';
          const { statusCode, body } = await request(`${endpoint}${path}`, {
            dispatcher: agent,
            headersTimeout: 2_000,
            bodyTimeout: 2_000,
          });
          await body.dump();
          if (statusCode !== 200) continue;
          if (path === '/health') t.healthMs = age(endpoint);
          else {
            t.readyMs = age(endpoint);
            pending.delete(endpoint);
          }
        } catch {
          // not listening yet
        }
      }
      if (pending.size > 0) await delay(50);
    }
  } finally {
    await agent?.destroy();
  }
}

/** Starts `dynamo local --nodes K` on free ports in a fresh temp directory and waits until it is ready. */
export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const cli = options.cli ?? SERVER_CLI;
  if (!existsSync(cli)) throw new Error(`server CLI not found at ${cli}; run \`npm run build\` first`);
  installExitHook();

  const root = await mkdtemp(path.join(os.tmpdir(), 'dynamo-ycsb-'));
  const dataDir = path.join(root, 'data');
  const logFile = path.join(root, 'cluster.log');
  let base: number;
  try {
    base = await findFreePortRange(options.nodes * 2);
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  const httpPort = base;
  const peerPort = base + options.nodes;
  const args = [
    cli,
    'local',
    '--nodes',
    String(options.nodes),
    '--http-port',
    String(httpPort),
    '--peer-port',
    String(peerPort),
    '--data-dir',
    dataDir,
    ...(options.insecure ? ['--insecure'] : []),
  ];
  const child = spawnLocal(args, logFile);
  const scheme = options.insecure ? 'http' : 'https';
  const endpoints = Array.from({ length: options.nodes }, (_, i) => `${scheme}://127.0.0.1:${httpPort + i}`);
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const cluster = new LocalClusterProcess(
    options.nodes,
    endpoints,
    httpPort,
    peerPort,
    root,
    logFile,
    child,
    args,
    readyTimeoutMs,
  );
  running.add(cluster);

  try {
    await waitForReady(cluster, readyTimeoutMs, options.signal);
    if (!options.insecure)
      cluster.token = readFileSync(path.join(dataDir, 'tokens'), 'utf8').match(/^admin (\S+)$/m)?.[1];
  } catch (err) {
    const tail = cluster.logTail();
    await cluster.stop();
    if (options.signal?.aborted) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(
      `local ${options.nodes}-node cluster failed to start: ${message}\n--- cluster log ---\n${tail}`,
    );
  }
  return cluster;
}
