/**
 * Real node processes, each in its own Linux network namespace, wired to one bridge (in a namespace of
 * its own) like hosts on a switch; the test process reaches them through one more veth. A partition is
 * a blackhole route in each node's namespace for the addresses across it: packets vanish as on a real
 * network, TCP connections hang until timeouts and the failure detector notice. Needs root and iproute2.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, spawnNode } from '../integration/harness.js';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

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

export interface StartOptions {
  /** Set the node's clock back this many seconds (libfaketime); 0 = the real clock. */
  skewSeconds?: number;
  /** Found the cluster (--bootstrap): n1 on the cluster's first start only. */
  bootstrap?: boolean;
}

/** Debian's libfaketime (hack/install-test-tools.sh installs it). */
function libfaketime(): string {
  const dirs = ['/usr/lib/faketime', ...readdirSync('/usr/lib').map((d) => `/usr/lib/${d}/faketime`)];
  const found = dirs.map((d) => `${d}/libfaketime.so.1`).find((f) => existsSync(f));
  if (!found) throw new Error('libfaketime not found: run bash hack/install-test-tools.sh (as root)');
  return found;
}

export class NetnsCluster {
  private readonly blackholes = new Set<string>();

  private constructor(
    readonly nodes: NsNode[],
    private readonly tag: string,
    private readonly root: string,
    private readonly args: string[],
  ) {}

  /** Namespaces dkv<tag>-*, a bridge, and count nodes started through gossip (n1 is the seed). */
  static async start(count: number, args: string[] = []): Promise<NetnsCluster> {
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
    for (let i = 1; i <= count; i++) {
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
    const cluster = new NetnsCluster(nodes, tag, root, args);
    try {
      await cluster.startNode(0, { bootstrap: true });
      await Promise.all(nodes.slice(1).map((_, i) => cluster.startNode(i + 1)));
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

  /** Starts (or restarts, on its data directory) node i; resolves once it answers /ready. */
  async startNode(i: number, opts: StartOptions = {}): Promise<void> {
    const node = this.nodes[i]!;
    // n1 and n2 are the seeds (n2 only once there is one), so both seeds can be killed at once.
    const seeds = this.nodes.slice(0, Math.min(2, this.nodes.length)).map((n) => `${n.address}:7070`);
    const args = ['netns', 'exec', node.ns];
    if (opts.skewSeconds) {
      // libfaketime preloaded by env, which execs (the faketime wrapper forks, and a kill would miss
      // the node). Timers keep the real monotonic clock; only the wall clock (Date.now) is set back.
      args.push('env', `LD_PRELOAD=${libfaketime()}`, `FAKETIME=-${opts.skewSeconds}s`);
      args.push('FAKETIME_DONT_FAKE_MONOTONIC=1');
    }
    args.push(process.execPath, CLI, 'node', '--node-id', node.id);
    args.push(
      '--seeds',
      seeds.join(','),
      '--advertise',
      `${node.address}:7070`,
      '--advertise-http',
      node.url,
    );
    args.push('--data-dir', node.dataDir, '--tokens', '64', '--log-level', 'warn', '--ring-settle-ms', '300');
    args.push(...this.args, ...(opts.bootstrap ? ['--bootstrap'] : []));
    node.stopping = false;
    const proc = await spawnNode(node, 'ip', args, `${node.url}/ready`, 30_000);
    node.proc = proc;
    proc.once('exit', (code, signal) => {
      if (!node.stopping && node.proc === proc) {
        const tail = node.output.join('').trim().split('\n').slice(-3).join(' / ');
        node.crashes.push(`${signal ?? `exit ${code}`}: ${tail.slice(0, 600)}`);
      }
    });
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

  /** Kills node i and deletes its data directory (a lost volume). */
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
