/**
 * Real node processes, each in its own Linux network namespace, wired to one bridge (in a namespace of
 * its own) like hosts on a switch; the test process reaches them through one more veth. A partition is
 * a blackhole route in each node's namespace for the addresses across it: packets vanish as on a real
 * network, TCP connections hang until timeouts and the failure detector notice. Spare namespaces wait
 * for a node that joins later; a node can move to a new address in its namespace (a rescheduled pod).
 * Needs root and iproute2.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCa, issueCertificate } from '../../node/src/pki/certificates.js';
import { CLI } from '../integration/harness.js';
import { clockSetBack } from '../support/system-tools.js';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** The node CLI the clusters run: the build, or a snapshot of it (snapshotBuild). */
let cli = CLI;

/**
 * Runs every node of later clusters from a copy of the build taken now, so a rebuild during a long run
 * (npm run build while developing) cannot leave a cluster of mixed versions. Returns the cleanup.
 */
export function snapshotBuild(): () => void {
  const dist = resolve(dirname(CLI), '../../..'); // dist/node/src/cli/main.js -> dist
  const repo = dirname(dist);
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-chaos-build-'));
  cpSync(join(dist, 'node'), join(dir, 'dist', 'node'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
  cli = join(dir, relative(repo, CLI));
  return () => {
    cli = CLI;
    rmSync(dir, { recursive: true, force: true });
  };
}

export interface NsNode {
  id: string;
  ns: string;
  address: string;
  url: string;
  dataDir: string;
  proc?: ChildProcess;
  output: string[];
  /** Exits nobody asked for (a crash): each with its exit code or signal. */
  crashes: string[];
  /** Set while the test itself stops the process, so its exit is no crash. */
  stopping?: boolean;
}

export interface ClusterOptions {
  /** Namespaces for nodes that are not started with the cluster (n<count+1>, ...): they join later. */
  spares?: number;
  /**
   * Mutual TLS on the peer port: a CA of this run and a certificate per node (the project's own pki),
   * so peers are their certificates and gossip entries are signed (the HTTP port stays plain).
   */
  tls?: boolean;
}

/** What a node that was expected to refuse to start printed, and how it exited. */
export interface Refusal {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

export interface StartOptions {
  /** Set the node's clock back this many seconds (libfaketime); 0 = the real clock. */
  skewSeconds?: number;
  /** Found the cluster (--bootstrap): n1 on the cluster's first start only. */
  bootstrap?: boolean;
}

/** A CA under root and a certificate per node (CN its id); the flags that give node i its files. */
function nodeCertificates(root: string, nodes: NsNode[]): (i: number) => string[] {
  const dir = join(root, 'tls');
  mkdirSync(dir, { recursive: true });
  const ca = createCa('chaos CA', 2);
  const caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, ca.cert);
  for (const node of nodes) {
    const own = issueCertificate(ca, { commonName: node.id, days: 2 });
    writeFileSync(join(dir, `${node.id}.crt`), own.cert);
    writeFileSync(join(dir, `${node.id}.key`), own.key);
  }
  return (i) => {
    const id = nodes[i]!.id;
    return ['--tls-cert', join(dir, `${id}.crt`), '--tls-key', join(dir, `${id}.key`), '--tls-ca', caFile];
  };
}

export class NetnsCluster {
  private readonly blackholes = new Set<string>();
  /** Last byte of the next address a moved node gets (the nodes' own are .2 to .<count+spares+1>). */
  private nextHost = 100;

  private constructor(
    readonly nodes: NsNode[],
    private readonly tag: string,
    private readonly root: string,
    private readonly args: string[],
    private readonly subnet: string,
    /** Flags of one node only (its certificate files), by index. */
    private readonly own: (i: number) => string[] = () => [],
  ) {}

  /**
   * Namespaces dkv<tag>-*, a bridge, and count nodes started through gossip (n1 and n2 are the seeds),
   * plus opts.spares namespaces whose nodes are not started.
   */
  static async start(count: number, args: string[] = [], opts: ClusterOptions = {}): Promise<NetnsCluster> {
    if (process.getuid?.() !== 0)
      throw new Error('the partition test makes network namespaces: run it as root (CI does)');
    const tag = String(process.pid % 10000);
    // A /24 no interface of this host uses yet: another suite's cluster (or one a killed run left
    // behind) may hold the one this pid would pick.
    const used = ip('-br', 'addr');
    let third = 100 + (process.pid % 100);
    for (let i = 0; i < 100 && used.includes(`10.213.${third}.`); i++) third = 100 + ((third - 99) % 100);
    const subnet = `10.213.${third}`;
    const sw = `dkv${tag}-sw`;
    const host = `dkv${tag}h`;
    // A namespace left over by an earlier run that died would hold the same names.
    for (const ns of ip('netns', 'list')
      .split('\n')
      .map((l) => l.split(' ')[0]!))
      if (ns.startsWith(`dkv${tag}-`)) ip('netns', 'del', ns);
    try {
      ip('link', 'del', host); // the host end of a leftover switch, when it has not gone with it yet
    } catch {
      // none: the usual case
    }
    ip('netns', 'add', sw);
    ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', sw, 'link', 'set', 'br0', 'up');
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', 'host', 'netns', sw);
    ip('-n', sw, 'link', 'set', 'host', 'master', 'br0', 'up');
    ip('addr', 'add', `${subnet}.1/24`, 'dev', host);
    ip('link', 'set', host, 'up');
    const root = mkdtempSync(join(tmpdir(), 'dynamo-netns-'));
    const nodes: NsNode[] = [];
    for (let i = 1; i <= count + (opts.spares ?? 0); i++) {
      const ns = `dkv${tag}-n${i}`;
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', sw);
      ip('-n', sw, 'link', 'set', `p${i}`, 'master', 'br0', 'up');
      const address = `${subnet}.${i + 1}`;
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      nodes.push({
        id: `n${i}`,
        ns,
        address,
        url: `http://${address}:8080`,
        dataDir: join(root, `n${i}`),
        output: [],
        crashes: [],
      });
    }
    const own = opts.tls ? nodeCertificates(root, nodes) : undefined;
    const cluster = new NetnsCluster(nodes, tag, root, args, subnet, own);
    try {
      await cluster.startNode(0, { bootstrap: true });
      await Promise.all(nodes.slice(1, count).map((_, i) => cluster.startNode(i + 1)));
    } catch (err) {
      // The caller never gets the cluster to stop: remove its processes and namespaces here.
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  url(i: number): string {
    return this.nodes[i]!.url;
  }

  /** The command line of node i in its namespace, advertising its current address. */
  private command(i: number, opts: StartOptions): string[] {
    const node = this.nodes[i]!;
    // n1 and n2 are the seeds (n2 only once there is one), so both seeds can be killed at once.
    const seeds = this.nodes.slice(0, Math.min(2, this.nodes.length)).map((n) => `${n.address}:7070`);
    const args = ['netns', 'exec', node.ns];
    if (opts.skewSeconds) args.push(...clockSetBack(opts.skewSeconds));
    args.push(process.execPath, cli, 'node', '--node-id', node.id);
    args.push(
      '--seeds',
      seeds.join(','),
      '--advertise',
      `${node.address}:7070`,
      '--advertise-http',
      node.url,
    );
    args.push('--data-dir', node.dataDir, '--tokens', '64', '--log-level', 'warn', '--ring-settle-ms', '300');
    args.push(...this.args, ...this.own(i), ...(opts.bootstrap ? ['--bootstrap'] : []));
    return args;
  }

  /** Spawns node i's process, keeping its output in node.output (which keeps growing across restarts). */
  private spawn(i: number, opts: StartOptions): { proc: ChildProcess; exited: Promise<void> } {
    const node = this.nodes[i]!;
    const proc = spawn('ip', this.command(i, opts), { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer) => node.output.push(b.toString());
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    node.proc = proc;
    const exited = new Promise<void>((r) => proc.once('close', () => r()));
    return { proc, exited };
  }

  /** True once url/ready answers 200. */
  private async ready(i: number): Promise<boolean> {
    try {
      return (await fetch(`${this.url(i)}/ready`, { signal: AbortSignal.timeout(1000) })).ok;
    } catch {
      return false;
    }
  }

  /**
   * Starts (or restarts, on its data directory) node i; resolves once it answers /ready. Rejects, with
   * what it printed, when it exits first or is not ready within timeoutMs (then it is killed).
   */
  async startNode(i: number, opts: StartOptions = {}, timeoutMs = 30_000): Promise<void> {
    const node = this.nodes[i]!;
    const from = node.output.length;
    node.stopping = false;
    let started = false;
    let done = false;
    const { proc, exited } = this.spawn(i, opts);
    proc.once('exit', (code, signal) => {
      if (started && !node.stopping && node.proc === proc) {
        const tail = node.output.join('').trim().split('\n').slice(-3).join(' / ');
        node.crashes.push(`${signal ?? `exit ${code}`}: ${tail.slice(0, 600)}`);
      }
    });
    void exited.then(() => {
      done = true;
    });
    const deadline = Date.now() + timeoutMs;
    while (!done && Date.now() < deadline) {
      if (await this.ready(i)) {
        started = true;
        return;
      }
      await sleep(100);
    }
    const printed = () => node.output.slice(from).join('').trim().slice(-1500);
    if (done) throw new Error(`${node.id} exited before it was ready: ${printed()}`);
    await this.kill(i);
    throw new Error(`${node.id} not ready within ${timeoutMs / 1000} s (killed): ${printed()}`);
  }

  /**
   * Starts node i where it must refuse to start (on the data of a member that was removed): resolves
   * with how it exited and what it printed. Rejects, after killing it, if it answers /ready instead or
   * neither exits nor gets ready within timeoutMs.
   */
  async startRefused(i: number, timeoutMs = 30_000): Promise<Refusal> {
    const node = this.nodes[i]!;
    const from = node.output.length;
    node.stopping = true; // its exit is expected: no crash
    const { proc, exited } = this.spawn(i, {});
    let done = false;
    void exited.then(() => {
      done = true;
    });
    const deadline = Date.now() + timeoutMs;
    while (!done && Date.now() < deadline) {
      if (await this.ready(i)) {
        await this.kill(i);
        throw new Error(`${node.id} started (answered /ready) where it had to refuse to`);
      }
      await sleep(100);
    }
    if (!done) {
      await this.kill(i);
      throw new Error(`${node.id} neither refused to start nor got ready within ${timeoutMs / 1000} s`);
    }
    await exited;
    return { code: proc.exitCode, signal: proc.signalCode, output: node.output.slice(from).join('') };
  }

  /**
   * Moves stopped node i to a new address in its namespace (the old one is deleted, so nothing reaches
   * it there any more), as a rescheduled pod gets a new IP; its next start advertises the new one.
   */
  moveAddress(i: number): string {
    if (this.running(i)) throw new Error(`stop ${this.nodes[i]!.id} before moving its address`);
    const node = this.nodes[i]!;
    if (this.nextHost > 254) throw new Error('no addresses left to move nodes to');
    const address = `${this.subnet}.${this.nextHost++}`;
    // The old one first: deleting a primary address deletes the secondaries of its subnet with it.
    ip('-n', node.ns, 'addr', 'del', `${node.address}/24`, 'dev', 'eth0');
    ip('-n', node.ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    node.address = address;
    node.url = `http://${address}:8080`;
    return address;
  }

  /** True while node i's process runs (it may be paused). */
  running(i: number): boolean {
    const proc = this.nodes[i]!.proc;
    return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
  }

  /** Sends signal to node i and waits for it to exit (the exit is no crash). */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const node = this.nodes[i]!;
    const proc = node.proc;
    if (!proc || !this.running(i)) return;
    node.stopping = true;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGCONT'); // a paused process cannot act on SIGTERM
    proc.kill(signal);
    await exited;
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing, as a node in a long GC pause. */
  pause(i: number): void {
    this.nodes[i]!.proc?.kill('SIGSTOP');
  }

  resume(i: number): void {
    this.nodes[i]!.proc?.kill('SIGCONT');
  }

  /** Kills node i (when it runs) and deletes its data directory (a lost volume). */
  async wipe(i: number): Promise<void> {
    await this.kill(i);
    rmSync(this.nodes[i]!.dataDir, { recursive: true, force: true });
  }

  /** Cuts the paths between each pair of node indices, both ways. */
  cut(pairs: Array<[number, number]>): void {
    for (const [a, b] of pairs) {
      for (const [i, j] of [
        [a, b],
        [b, a],
      ] as const) {
        const route = `${this.nodes[i]!.ns} ${this.nodes[j]!.address}`;
        if (this.blackholes.has(route)) continue;
        ip('-n', this.nodes[i]!.ns, 'route', 'add', 'blackhole', `${this.nodes[j]!.address}/32`);
        this.blackholes.add(route);
      }
    }
  }

  /** Cuts every path between the two groups (indices), both ways. */
  partition(a: number[], b: number[]): void {
    this.cut(a.flatMap((i) => b.map((j): [number, number] => [i, j])));
  }

  /** Restores every path cut by partition(). */
  heal(): void {
    for (const route of this.blackholes) {
      const [ns, address] = route.split(' ') as [string, string];
      ip('-n', ns, 'route', 'del', 'blackhole', `${address}/32`);
    }
    this.blackholes.clear();
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.kill(i)));
    // Deleting the namespaces removes their veths, and with the switch's, the host end too.
    for (const n of this.nodes) ip('netns', 'del', n.ns);
    ip('netns', 'del', `dkv${this.tag}-sw`);
    rmSync(this.root, { recursive: true, force: true });
  }
}
