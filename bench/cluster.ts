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

class LocalClusterProcess implements LocalCluster {
  private stopping: Promise<void> | undefined;
  readonly exited: Promise<string>;
  token: string | undefined;
  ca: Buffer | undefined;

  constructor(
    readonly nodes: number,
    readonly endpoints: string[],
    readonly httpPort: number,
    readonly peerPort: number,
    readonly root: string,
    readonly logFile: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`));
      child.once('error', (err) => resolve(`spawn failed: ${err.message}`));
    });
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
        try {
          const { statusCode, body } = await request(`${endpoint}/ready`, {
            dispatcher: agent,
            headersTimeout: 2_000,
            bodyTimeout: 2_000,
          });
          await body.dump();
          if (statusCode === 200) pending.delete(endpoint);
        } catch {
          // not listening yet
        }
      }
      if (pending.size > 0) await delay(200);
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
  const log = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
  const scheme = options.insecure ? 'http' : 'https';
  const endpoints = Array.from({ length: options.nodes }, (_, i) => `${scheme}://127.0.0.1:${httpPort + i}`);
  const cluster = new LocalClusterProcess(options.nodes, endpoints, httpPort, peerPort, root, logFile, child);
  running.add(cluster);

  try {
    await waitForReady(cluster, options.readyTimeoutMs ?? 30_000, options.signal);
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
