/**
 * What the real-Kubernetes scenarios do to the cluster and its DynamoCluster, as a user would: kubectl and helm
 * for the objects, and HTTPS to the nodes from the host, which is the Kubernetes node here (its network
 * namespace routes to pod IPs and, through kube-proxy, to ClusterIPs). Nodes are reached with the cluster CA
 * from `<cluster>-tls` (verifying the name their certificate holds) and the tokens from `<cluster>-auth`.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch, type RequestInit, type Response } from 'undici';

export interface Tools {
  kubeconfig: string;
  bin: string;
  helmBin: string;
  script: string;
}

/** The fields of Kubernetes objects the scenarios read. */
export interface KubeObject {
  metadata: { name: string; uid: string; generation?: number; deletionTimestamp?: string };
  spec?: {
    containers?: Array<{ image?: string }>;
    clusterIP?: string;
    claimRef?: { namespace?: string; name?: string };
  };
  status?: {
    podIP?: string;
    phase?: string;
    observedGeneration?: number;
    readyNodes?: number;
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string }>;
  };
}

export interface KubeList {
  items: KubeObject[];
}

export interface Exec {
  stdout: string;
  stderr: string;
}

export function exec(command: string, args: string[], input?: string, timeoutMs = 300_000): Promise<Exec> {
  return new Promise((res, rej) => {
    const child = execFile(
      command,
      args,
      { maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs },
      (err, stdout, stderr) => {
        if (err) {
          rej(new Error(`${command} ${args.join(' ')}: ${err.message}\n${stderr}`));
          return;
        }
        res({ stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

export class Kube {
  constructor(readonly tools: Tools) {}

  async kubectl(args: string[], input?: string): Promise<string> {
    const r = await exec(
      join(this.tools.bin, 'kubectl'),
      ['--kubeconfig', this.tools.kubeconfig, ...args],
      input,
    );
    return r.stdout;
  }

  async json<T = KubeObject>(args: string[]): Promise<T> {
    return JSON.parse(await this.kubectl([...args, '-o', 'json'])) as T;
  }

  async helm(args: string[]): Promise<string> {
    const r = await exec(join(this.tools.helmBin, 'helm'), ['--kubeconfig', this.tools.kubeconfig, ...args]);
    return r.stdout;
  }

  /** hack/local-k8s.sh's ctr on the cluster's containerd. */
  async ctr(args: string[]): Promise<string> {
    return (await exec('bash', [this.tools.script, 'ctr', ...args])).stdout;
  }

  async secretValue(namespace: string, name: string, key: string): Promise<string> {
    const secret = await this.json<{ data?: Record<string, string> }>([
      'get',
      'secret',
      '-n',
      namespace,
      name,
    ]);
    const value = secret.data?.[key];
    if (value === undefined) throw new Error(`secret ${namespace}/${name} has no ${key}`);
    return Buffer.from(value, 'base64').toString('utf8');
  }
}

/** Polls check until it returns a value other than undefined/false; throws with the last reason after timeoutMs. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = 2_000,
  progress?: (reason: string) => void,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
      last = 'not yet';
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}: ${last}`);
    progress?.(last);
    await sleep(intervalMs);
  }
}

export interface PodInfo {
  name: string;
  ordinal: number;
  ip?: string;
  ready: boolean;
  image?: string;
  uid: string;
  deleting: boolean;
}

export interface RingMember {
  id: string;
  state: string;
  rack?: string | null;
  tokenCount?: number;
}

/** A DynamoCluster as the scenarios see it: its pods, its nodes' HTTPS APIs and its client Service. */
export class DynamoClusterHandle {
  private readonly agents = new Map<string, Agent>();
  ca = '';
  adminToken = '';
  writeToken = '';
  serviceIP = '';

  constructor(
    readonly kube: Kube,
    readonly namespace: string,
    readonly name: string,
  ) {}

  podDns(ordinal: number): string {
    return `${this.name}-${ordinal}.${this.name}-peers.${this.namespace}.svc.cluster.local`;
  }

  get serviceDns(): string {
    return `${this.name}.${this.namespace}.svc.cluster.local`;
  }

  /** Reads the CA, the tokens and the client Service's ClusterIP (once the operator has made them). */
  async loadAccess(): Promise<void> {
    this.ca = await this.kube.secretValue(this.namespace, `${this.name}-tls`, 'ca.crt');
    this.adminToken = await this.kube.secretValue(this.namespace, `${this.name}-auth`, 'admin-token');
    this.writeToken = await this.kube.secretValue(this.namespace, `${this.name}-auth`, 'write-token');
    const svc = await this.kube.json<{ spec: { clusterIP: string } }>([
      'get',
      'service',
      '-n',
      this.namespace,
      this.name,
    ]);
    this.serviceIP = svc.spec.clusterIP;
  }

  private agent(servername: string): Agent {
    let a = this.agents.get(servername);
    if (a === undefined) {
      a = new Agent({ connect: { ca: this.ca, servername, timeout: 5_000 }, keepAliveTimeout: 4_000 });
      this.agents.set(servername, a);
    }
    return a;
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.close().catch(() => undefined)));
    this.agents.clear();
  }

  /** A request to one node at its pod IP, checking its certificate names the pod. */
  async nodeFetch(
    pod: PodInfo,
    path: string,
    init: RequestInit = {},
    token = this.adminToken,
  ): Promise<Response> {
    if (pod.ip === undefined) throw new Error(`${pod.name} has no IP`);
    return await fetch(`https://${pod.ip}:8080${path}`, {
      ...init,
      dispatcher: this.agent(this.podDns(pod.ordinal)),
      headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) },
      signal: init.signal ?? AbortSignal.timeout(10_000),
    });
  }

  /** A request through the client Service (its ClusterIP, the certificate checked for the Service's name). */
  async serviceFetch(path: string, init: RequestInit = {}, token = this.writeToken): Promise<Response> {
    return await fetch(`https://${this.serviceIP}:8080${path}`, {
      ...init,
      dispatcher: this.agent(this.serviceDns),
      headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) },
      signal: init.signal ?? AbortSignal.timeout(10_000),
    });
  }

  async pods(): Promise<PodInfo[]> {
    const list = await this.kube.json<KubeList>([
      'get',
      'pods',
      '-n',
      this.namespace,
      '-l',
      `dynamokv.io/cluster=${this.name},app.kubernetes.io/component=node`,
    ]);
    const out: PodInfo[] = [];
    for (const p of list.items) {
      const name: string = p.metadata.name;
      const m = new RegExp(`^${this.name}-(\\d+)$`).exec(name);
      if (!m) continue;
      out.push({
        name,
        ordinal: Number(m[1]),
        ip: p.status?.podIP,
        uid: p.metadata.uid,
        deleting: p.metadata.deletionTimestamp !== undefined,
        image: p.spec?.containers?.[0]?.image,
        ready: (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
      });
    }
    return out.sort((a, b) => a.ordinal - b.ordinal);
  }

  async ring(pod: PodInfo): Promise<RingMember[]> {
    const res = await this.nodeFetch(pod, '/admin/ring');
    if (res.status !== 200) throw new Error(`${pod.name} /admin/ring: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { members: RingMember[] };
    return body.members;
  }

  async resource(): Promise<KubeObject> {
    return await this.kube.json(['get', 'dynamocluster', '-n', this.namespace, this.name]);
  }

  async patchSpec(spec: Record<string, unknown>): Promise<void> {
    await this.kube.kubectl([
      'patch',
      'dynamocluster',
      '-n',
      this.namespace,
      this.name,
      '--type',
      'merge',
      '-p',
      JSON.stringify({ spec }),
    ]);
  }

  /**
   * Whether the cluster is settled at `nodes` nodes: the operator saw the latest spec and says Ready with
   * that many ready nodes, exactly that many node pods exist (none terminating), and every node's ring holds
   * exactly those nodes, all up. Returns undefined with the reason in `why` otherwise.
   */
  async settled(nodes: number, why: { reason: string }): Promise<boolean> {
    const cr = await this.resource();
    const status = cr.status ?? {};
    const ready = status.conditions?.find((c) => c.type === 'Ready')?.status;
    if (cr.metadata.generation !== status.observedGeneration || status.phase !== 'Ready') {
      why.reason = `generation ${cr.metadata.generation}/${status.observedGeneration} phase ${status.phase} Ready=${ready}`;
      return false;
    }
    if (status.readyNodes !== nodes || ready !== 'True') {
      why.reason = `readyNodes ${status.readyNodes} of ${nodes}, Ready=${ready}`;
      return false;
    }
    const pods = await this.pods();
    if (pods.length !== nodes || pods.some((p) => !p.ready || p.deleting)) {
      why.reason = `pods: ${pods.map((p) => `${p.name}${p.ready ? '' : ' (not ready)'}${p.deleting ? ' (terminating)' : ''}`).join(', ')}`;
      return false;
    }
    const expected = pods.map((p) => p.name).sort();
    for (const pod of pods) {
      const members = (await this.ring(pod)).filter((m) => m.state !== 'removed' && m.state !== 'left');
      const ids = members.map((m) => m.id).sort();
      if (ids.join(',') !== expected.join(',') || members.some((m) => m.state !== 'up')) {
        why.reason = `${pod.name} sees ${members.map((m) => `${m.id}:${m.state}`).join(' ')}`;
        return false;
      }
    }
    return true;
  }

  async waitSettled(nodes: number, timeoutMs = 10 * 60_000): Promise<void> {
    const why = { reason: '' };
    let last = '';
    await waitUntil(
      `${this.name} settled at ${nodes} nodes`,
      async () => {
        const ok = await this.settled(nodes, why);
        if (!ok && why.reason !== last) {
          last = why.reason;
          console.log(`  [${new Date().toISOString().slice(11, 19)}] ${this.name}: ${why.reason}`);
        }
        if (!ok) throw new Error(why.reason);
        return true;
      },
      timeoutMs,
      2_000,
    );
  }

  /** Prints what helps to understand a failure: objects, events, the operator's and the nodes' logs. */
  async diagnostics(operatorNamespace: string): Promise<void> {
    const show = async (label: string, args: string[]) => {
      try {
        console.log(`--- ${label}\n${await this.kube.kubectl(args)}`);
      } catch (err) {
        console.log(`--- ${label}: ${err instanceof Error ? err.message : err}`);
      }
    };
    await show('objects', [
      'get',
      'dynamocluster,statefulset,pods,pvc,services',
      '-n',
      this.namespace,
      '-o',
      'wide',
    ]);
    await show('cluster', ['describe', 'dynamocluster', '-n', this.namespace, this.name]);
    await show('events', ['get', 'events', '-n', this.namespace, '--sort-by=.lastTimestamp']);
    await show('operator log', [
      'logs',
      '-n',
      operatorNamespace,
      '-l',
      'app.kubernetes.io/component=operator',
      '--tail=80',
    ]);
    await show('node logs', [
      'logs',
      '-n',
      this.namespace,
      '-l',
      `dynamokv.io/cluster=${this.name}`,
      '--prefix',
      '--tail=30',
    ]);
  }
}

export interface Missing {
  key: string;
  value: string;
  got: string;
}

/**
 * A writer through the client Service: blind writes of fresh keys (one value each) with the default w, each
 * acknowledged one recorded; verify() then reads every acknowledged key back through the Service (default r:
 * r + w > n) and reports those whose value is gone. A refusal or an error is no acknowledgement.
 */
export class AckedWriter {
  readonly acked = new Map<string, string>();
  attempts = 0;
  refused = 0;
  readonly failures = new Map<string, number>();
  private running = false;
  private loops: Promise<void>[] = [];
  private next = 0;

  constructor(
    private readonly cluster: DynamoClusterHandle,
    readonly bucket: string,
    readonly prefix: string,
  ) {}

  private async writeOne(i: number): Promise<void> {
    const key = `${this.prefix}-${i}`;
    const value = `${key}:${Date.now()}`;
    this.attempts++;
    try {
      const res = await this.cluster.serviceFetch(`/buckets/${this.bucket}/keys/${key}`, {
        method: 'PUT',
        body: value,
        headers: { 'content-type': 'text/plain' },
      });
      await res.arrayBuffer();
      if (res.status === 204 || res.status === 200) {
        this.acked.set(key, value);
        return;
      }
      this.count(`${res.status}`);
    } catch (err) {
      this.count((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name);
    }
    this.refused++;
  }

  private count(kind: string): void {
    this.failures.set(kind, (this.failures.get(kind) ?? 0) + 1);
  }

  /** Starts `concurrency` writers, each pausing `pauseMs` between writes. */
  start(concurrency = 3, pauseMs = 20): void {
    this.running = true;
    for (let w = 0; w < concurrency; w++) {
      this.loops.push(
        (async () => {
          while (this.running) {
            await this.writeOne(this.next++);
            if (pauseMs > 0) await sleep(pauseMs);
          }
        })(),
      );
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  summary(): string {
    const failures = [...this.failures].map(([k, n]) => `${k}: ${n}`).join(', ');
    return `${this.acked.size} acknowledged of ${this.attempts} attempted, ${this.refused} not acknowledged${failures ? ` (${failures})` : ''}`;
  }

  /** Every acknowledged value not readable through the Service (transient errors retried). */
  async verify(keys: Iterable<string> = this.acked.keys()): Promise<Missing[]> {
    const missing: Missing[] = [];
    const list = [...keys];
    for (let start = 0; start < list.length; start += 16) {
      await Promise.all(
        list.slice(start, start + 16).map(async (key) => {
          const value = this.acked.get(key)!;
          const got = await this.read(key);
          if (!got.values.includes(value)) missing.push({ key, value, got: got.status });
        }),
      );
    }
    return missing;
  }

  private async read(key: string): Promise<{ status: string; values: string[] }> {
    let status = '';
    for (let attempt = 1; attempt <= 6; attempt++) {
      try {
        const res = await this.cluster.serviceFetch(
          `/buckets/${this.bucket}/keys/${key}`,
          {},
          this.cluster.writeToken,
        );
        const body = await res.text();
        if (res.status === 200) return { status: '200', values: [body] };
        if (res.status === 300) {
          const siblings = (JSON.parse(body) as { siblings: { value: string }[] }).siblings;
          return { status: '300', values: siblings.map((s) => Buffer.from(s.value, 'base64').toString()) };
        }
        status = `${res.status} ${body.slice(0, 120)}`;
        if (res.status !== 503) return { status, values: [] };
      } catch (err) {
        status = (err as Error).message;
      }
      await sleep(500 * attempt);
    }
    return { status, values: [] };
  }
}
