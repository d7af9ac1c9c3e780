/**
 * A scheduler and kubelet for one namespace of a test control plane, with no containers: every pod is bound to
 * a fake Node and its (single) container runs as a local process from this repository's build.
 *
 * - Scheduling: a new pod without spec.nodeName is bound to the runner's Node (pods/binding subresource).
 * - Networking: each pod gets its own loopback address (all of 127/8 is loopback on Linux), 127.0.<10+k>.<ordinal+1>
 *   for the k-th StatefulSet seen, so every pod listens on its container ports as in a real pod. Anything a
 *   pod would bind on 0.0.0.0 binds its own address instead, and cluster DNS names of pods
 *   (<pod>.<service>.<namespace>.svc.cluster.local) in the environment become those pods' addresses (there
 *   is no DNS here). The API server refuses loopback addresses in Endpoints and EndpointSlices, so the pod IP
 *   reported in the pod's status is 10.244.<10+k>.<ordinal+1>, and toLoopback() is the one-to-one translation
 *   (a NAT) callers outside the pods apply to it: the operator's node URLs and clients reading endpoints.
 * - Volumes: a PersistentVolumeClaim is a directory per claim (by uid), kept across restarts of the pod and
 *   removed when the claim is deleted; the runner also plays the pvc-protection controller (it removes the
 *   claim's finalizer once no pod uses it). A ConfigMap or Secret volume is a directory of its keys,
 *   refreshed as the object changes. Mount paths are mapped to these directories wherever they appear in the container's
 *   command, arguments and environment.
 * - Environment: env values with $(VAR) expansion and valueFrom fieldRef (metadata.name, metadata.namespace,
 *   metadata.uid, status.podIP, spec.nodeName) and configMapKeyRef.
 * - Status: phase Running, podIP, and the Ready condition from the container's HTTP(S) readiness probe, polled
 *   every 500 ms (HTTPS without checking the certificate, as the kubelet) (the probe's failureThreshold consecutive failures make it unready), through pods/status.
 * - Restarts: restartPolicy Always, with exponential backoff (capped at 10 s) and restartCount.
 * - Termination: when a pod gets a deletionTimestamp, the preStop exec hook runs, then SIGTERM, then SIGKILL at
 *   the end of the grace period; the pod object is then deleted with grace period 0 (uid precondition).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ApiException,
  CoreV1Api,
  type KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Container,
  type V1PersistentVolumeClaim,
  type V1Pod,
  type V1PodCondition,
  type V1Secret,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { keepRunning, type RestartingInformer } from '../../operator/src/watches.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
const PROBE_INTERVAL_MS = 500;
const MAX_BACKOFF_MS = 10_000;
const PVC_PROTECTION = 'kubernetes.io/pvc-protection';
/** The kubelet's HTTPS probes trust any certificate. */
const PROBE_AGENT = new Agent({ connect: { rejectUnauthorized: false } });
// Linux's parent-death signal: a test process killed outright takes its pods' processes with it.
const SETPRIV = '/usr/bin/setpriv';

export interface PodRunnerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Name of the Node object pods are bound to (created by start()). */
  nodeName?: string;
  /** Working directory of the containers' processes (the image's WORKDIR): the repository root. */
  workDir?: string;
  /** Extra environment for every container, applied last (e.g. shorter timers). */
  extraEnv?: Record<string, string>;
  /** Log lines about what the runner does (default: none). */
  log?: (message: string) => void;
}

/** A pod's container as a local process. */
class Container {
  child: ChildProcess | undefined;
  ready = false;
  restartCount = 0;
  startedAt: string | undefined;
  lastExit: { exitCode: number; reason: string; finishedAt: string } | undefined;
  terminating = false;
  stopped = false;
  private failures = 0;
  private backoffStep = 0;
  private probe: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private lastReported = '';
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly runner: PodRunner,
    readonly pod: V1Pod,
    readonly ip: string,
    readonly spec: V1Container,
    readonly command: string[],
    readonly env: Record<string, string>,
    readonly logPath: string,
    readonly claims: string[],
    readonly mounts: Array<[string, string]>,
  ) {}

  /** The address the API server knows the pod by (see toLoopback). */
  get podIP(): string {
    return podIPFor(this.ip);
  }

  get name(): string {
    return this.pod.metadata!.name!;
  }

  get uid(): string {
    return this.pod.metadata!.uid!;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    if (this.stopped || this.terminating) return;
    const fd = openSync(this.logPath, 'a');
    const [cmd, ...args] = this.command as [string, ...string[]];
    const [bin, argv] = existsSync(SETPRIV)
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]]
      : [cmd, args];
    const child = spawn(bin, argv, {
      cwd: this.runner.workDir,
      env: this.env,
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    this.child = child;
    this.startedAt = new Date().toISOString();
    const started = Date.now();
    this.exited = new Promise((res) => {
      child.once('exit', (code, signal) => {
        this.lastExit = {
          exitCode: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15),
          reason: code === 0 ? 'Completed' : 'Error',
          finishedAt: new Date().toISOString(),
        };
        this.ready = false;
        this.failures = 0;
        res();
        if (this.terminating || this.stopped) return;
        // restartPolicy Always: back off 1 s, 2 s, 4 s ... up to 10 s, reset after 10 s of running.
        if (Date.now() - started > 10_000) this.backoffStep = 0;
        const delay = Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** this.backoffStep);
        this.backoffStep = Math.min(this.backoffStep + 1, 10);
        this.restartCount++;
        this.runner.say(
          `${this.name}: exited (${code ?? signal}); restart ${this.restartCount} in ${delay} ms; log tail:\n${this.logTail(8)}`,
        );
        void this.report();
        this.restartTimer = setTimeout(() => {
          this.restartTimer = undefined;
          this.start();
        }, delay);
      });
    });
    child.once('error', (err) => this.runner.say(`${this.name}: spawn failed: ${err.message}`));
    this.runner.say(`${this.name}: started pid ${child.pid} on ${this.ip}`);
    this.startProbe();
    void this.report();
  }

  private startProbe(): void {
    if (this.probe !== undefined) return;
    const probe = this.spec.readinessProbe?.httpGet;
    const threshold = this.spec.readinessProbe?.failureThreshold ?? 3;
    const tick = async (): Promise<void> => {
      if (this.stopped || this.terminating) return;
      let ok = false;
      if (this.running) {
        if (probe === undefined) ok = true;
        else {
          const port = resolvePort(this.spec, probe.port);
          try {
            // As the kubelet: HTTPS probes do not check the certificate.
            const https = probe.scheme === 'HTTPS';
            const res = await undiciFetch(
              `${https ? 'https' : 'http'}://${this.ip}:${port}${probe.path ?? '/'}`,
              {
                signal: AbortSignal.timeout(2_000),
                ...(https ? { dispatcher: PROBE_AGENT } : {}),
              },
            );
            await res.arrayBuffer();
            ok = res.status >= 200 && res.status < 400;
          } catch {
            ok = false;
          }
        }
      }
      if (ok) {
        this.failures = 0;
        this.ready = true;
      } else if (!this.running || ++this.failures >= threshold) {
        this.ready = false;
      }
      await this.report();
    };
    this.probe = setInterval(() => void tick(), PROBE_INTERVAL_MS);
  }

  /** The pod's status as a kubelet would report it; patched only when it changes. */
  async report(force = false): Promise<void> {
    if (this.stopped) return;
    const running = this.running;
    const ready = running && this.ready && !this.terminating;
    const key = JSON.stringify([running, ready, this.restartCount, this.startedAt]);
    if (key === this.lastReported && !force) return;
    this.lastReported = key;
    const now = new Date().toISOString();
    const previous = this.pod.status?.conditions ?? [];
    const condition = (type: string, status: boolean): V1PodCondition => {
      const value = status ? 'True' : 'False';
      const old = previous.find((c) => c.type === type);
      const since = old?.status === value ? old.lastTransitionTime : now;
      return { type, status: value, lastTransitionTime: since as unknown as Date };
    };
    const conditions = [
      condition('PodScheduled', true),
      condition('Initialized', true),
      condition('ContainersReady', ready),
      condition('Ready', ready),
    ];
    const state = running
      ? { running: { startedAt: this.startedAt } }
      : { waiting: { reason: this.lastExit ? 'CrashLoopBackOff' : 'ContainerCreating' } };
    const status = {
      phase: 'Running',
      hostIP: '127.0.0.1',
      hostIPs: [{ ip: '127.0.0.1' }],
      podIP: this.podIP,
      podIPs: [{ ip: this.podIP }],
      startTime: this.pod.status?.startTime ?? now,
      conditions,
      containerStatuses: [
        {
          name: this.spec.name,
          image: this.spec.image ?? '',
          imageID: '',
          containerID: this.child?.pid ? `local://${this.child.pid}` : undefined,
          ready,
          started: running,
          restartCount: this.restartCount,
          state,
          ...(this.lastExit ? { lastState: { terminated: this.lastExit } } : {}),
        },
      ],
    };
    try {
      const updated = await this.runner.core.patchNamespacedPodStatus(
        { name: this.name, namespace: this.runner.namespace, body: { status } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      if (updated.metadata?.uid === this.uid) this.pod.status = updated.status;
    } catch (err) {
      // Gone or replaced: nothing to report. Anything else: report again on the next probe.
      if (!(err instanceof ApiException && err.code === 404)) this.lastReported = '';
    }
  }

  /** Plays the kubelet's part of a pod deletion: preStop, SIGTERM, SIGKILL after the grace period. */
  async terminate(graceSeconds: number): Promise<void> {
    if (this.terminating) return;
    this.terminating = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    const deadline = Date.now() + graceSeconds * 1000;
    const preStop = this.spec.lifecycle?.preStop?.exec?.command;
    if (preStop && this.running) {
      this.runner.say(`${this.name}: preStop`);
      await runHook(
        preStop.map((a) => mapPaths(expand(a, this.env), this.mounts)),
        this.env,
        this.runner.workDir,
        deadline,
      );
    }
    if (this.running) {
      this.runner.say(`${this.name}: SIGTERM`);
      this.child!.kill('SIGTERM');
      const timer = setTimeout(() => this.child?.kill('SIGKILL'), Math.max(0, deadline - Date.now()));
      await this.exited;
      clearTimeout(timer);
    }
    this.stopProbe();
    this.runner.say(`${this.name}: terminated (${this.lastExit?.exitCode ?? 'never ran'})`);
  }

  /** Stops everything at once (the runner is shutting down). */
  async kill(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    this.stopProbe();
    if (this.running) {
      this.child!.kill('SIGTERM');
      const timer = setTimeout(() => this.child?.kill('SIGKILL'), 5_000);
      await this.exited;
      clearTimeout(timer);
    }
  }

  private stopProbe(): void {
    if (this.probe !== undefined) clearInterval(this.probe);
    this.probe = undefined;
  }

  logTail(lines = 40): string {
    const text = existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }
}

export class PodRunner {
  readonly core: CoreV1Api;
  readonly namespace: string;
  readonly nodeName: string;
  readonly workDir: string;
  readonly root: string;
  /** Running (or restarting, or terminating) containers by pod uid. */
  private readonly containers = new Map<string, Container>();
  /** Pod uids being bound, started or terminated (one operation at a time per pod). */
  private readonly busy = new Set<string>();
  /** Those operations, for stop() to wait on. */
  private readonly inflight = new Set<Promise<void>>();
  /** Pods bound (their update may not have reached the cache yet). */
  private readonly bound = new Set<string>();
  /** Claim directories by claim uid. */
  private readonly claimDirs = new Map<string, { name: string; dir: string }>();
  /** Third octet of each StatefulSet's addresses. */
  private readonly subnets = new Map<string, number>();
  private readonly informers: Array<{ start(): Promise<void>; stop(): Promise<void> }> = [];
  private pods!: RestartingInformer<V1Pod>;
  private claims!: RestartingInformer<V1PersistentVolumeClaim>;
  private configMaps!: RestartingInformer<V1ConfigMap>;
  private secrets!: RestartingInformer<V1Secret>;
  private timer: NodeJS.Timeout | undefined;
  private syncing = false;
  private again = false;
  private stopped = false;
  /** Every log line, for a failing test's report. */
  readonly events: string[] = [];

  constructor(private readonly options: PodRunnerOptions) {
    this.core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.namespace = options.namespace;
    this.nodeName = options.nodeName ?? 'e2e-node';
    this.workDir = options.workDir ?? REPO_ROOT;
    this.root = mkdtempSync(join(tmpdir(), 'dynamo-pods-'));
    for (const sub of ['claims', 'configmaps', 'logs']) mkdirSync(join(this.root, sub));
  }

  say(message: string): void {
    const line = `${new Date().toISOString()} pod-runner ${message}`;
    this.events.push(line);
    this.options.log?.(line);
  }

  /** Creates the Node (Ready), starts the watches and the sync loop. */
  async start(): Promise<void> {
    await this.ensureNode();
    const kc = this.options.kubeConfig;
    const ns = this.namespace;
    const log = pino({ level: 'silent' });
    const wake = () => () => this.kick();
    this.pods = keepRunning(
      'pods',
      makeInformer<V1Pod>(kc, `/api/v1/namespaces/${ns}/pods`, () =>
        this.core.listNamespacedPod({ namespace: ns }),
      ),
      wake,
      log,
    );
    this.claims = keepRunning(
      'pvcs',
      makeInformer<V1PersistentVolumeClaim>(kc, `/api/v1/namespaces/${ns}/persistentvolumeclaims`, () =>
        this.core.listNamespacedPersistentVolumeClaim({ namespace: ns }),
      ),
      wake,
      log,
    );
    this.configMaps = keepRunning(
      'configmaps',
      makeInformer<V1ConfigMap>(kc, `/api/v1/namespaces/${ns}/configmaps`, () =>
        this.core.listNamespacedConfigMap({ namespace: ns }),
      ),
      wake,
      log,
    );
    this.secrets = keepRunning(
      'secrets',
      makeInformer<V1Secret>(kc, `/api/v1/namespaces/${ns}/secrets`, () =>
        this.core.listNamespacedSecret({ namespace: ns }),
      ),
      wake,
      log,
    );
    this.informers.push(this.pods, this.claims, this.configMaps, this.secrets);
    await Promise.all(this.informers.map((i) => i.start()));
    this.timer = setInterval(() => this.kick(), 1_000);
    this.kick();
  }

  /** Kills every process (SIGTERM, then SIGKILL), stops the watches and removes every directory. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await Promise.all([...this.containers.values()].map((c) => c.kill()));
    // Operations under way end quickly once their processes are gone; none starts a process after this.
    await Promise.race([Promise.allSettled([...this.inflight]), sleep(15_000)]);
    await Promise.all([...this.containers.values()].map((c) => c.kill()));
    await Promise.all(this.informers.map((i) => i.stop().catch(() => undefined)));
    rmSync(this.root, { recursive: true, force: true });
  }

  /** The address of a pod (by name), assigned on first use. */
  ipOf(pod: string): string {
    const match = /^(.*)-(0|[1-9][0-9]*)$/.exec(pod);
    if (!match) throw new Error(`pod ${pod} has no ordinal`);
    const [, set, ordinal] = match as unknown as [string, string, string];
    if (Number(ordinal) > 253) throw new Error(`ordinal of ${pod} too high for one /24`);
    let subnet = this.subnets.get(set!);
    if (subnet === undefined) {
      subnet = 10 + this.subnets.size;
      this.subnets.set(set!, subnet);
    }
    return `127.0.${subnet}.${Number(ordinal) + 1}`;
  }

  /** The pod IP the runner reports for a pod (by name). */
  podIPOf(pod: string): string {
    return podIPFor(this.ipOf(pod));
  }

  /** The loopback address behind a pod IP the runner reported (other addresses are returned as they are). */
  toLoopback(podIP: string): string {
    const m = /^10\.244\.([0-9]+)\.([0-9]+)$/.exec(podIP);
    return m ? `127.0.${m[1]}.${m[2]}` : podIP;
  }

  /** Claim directories that exist now, by claim name. */
  claimDirectories(): Map<string, string> {
    const out = new Map<string, string>();
    for (const { name, dir } of this.claimDirs.values()) if (existsSync(dir)) out.set(name, dir);
    return out;
  }

  /** Log tail of a pod's current process (by pod name). */
  logOf(pod: string, lines = 40): string {
    for (const c of this.containers.values()) if (c.name === pod) return c.logTail(lines);
    return '';
  }

  /** Log tails of every pod's process, for a failure report. */
  logs(lines = 20): string {
    const files = readdirSync(join(this.root, 'logs')).sort();
    return files
      .map((f) => {
        const text = readFileSync(join(this.root, 'logs', f), 'utf8')
          .trimEnd()
          .split('\n');
        return `--- ${f}\n${text.slice(-lines).join('\n')}`;
      })
      .join('\n');
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    void this.sync()
      .catch((err) => this.say(`sync failed: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        this.syncing = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** One level-triggered pass over pods and claims. */
  private async sync(): Promise<void> {
    const pods = this.pods.cache.list();
    const live = new Set<string>();
    for (const pod of pods) {
      const uid = pod.metadata!.uid!;
      live.add(uid);
      if (this.busy.has(uid)) continue;
      if (pod.metadata?.deletionTimestamp) {
        if (pod.spec?.nodeName === this.nodeName) this.task(uid, () => this.terminate(pod));
      } else if (!pod.spec?.nodeName) {
        // The cache may not show the binding yet.
        if (!this.bound.has(uid)) this.task(uid, () => this.bind(pod));
      } else if (pod.spec.nodeName === this.nodeName && !this.containers.has(uid)) {
        this.task(uid, () => this.startPod(pod));
      }
    }
    for (const uid of this.bound) if (!live.has(uid)) this.bound.delete(uid);
    // Pods deleted outright (grace period 0 by someone else): their processes go too.
    for (const [uid, c] of this.containers) {
      if (!live.has(uid) && !this.busy.has(uid)) {
        this.containers.delete(uid);
        this.task(uid, () => c.kill());
      }
    }
    this.refreshConfigMapVolumes();
    await this.syncClaims();
  }

  private task(uid: string, fn: () => Promise<void>): void {
    this.busy.add(uid);
    const done = fn()
      .catch((err) =>
        this.say(`pod ${uid}: ${err instanceof ApiException ? `${err.code} ${err.body}` : String(err)}`),
      )
      .finally(() => {
        this.busy.delete(uid);
        this.inflight.delete(done);
        this.kick();
      });
    this.inflight.add(done);
  }

  private async ensureNode(): Promise<void> {
    try {
      await this.core.createNode({
        body: {
          metadata: {
            name: this.nodeName,
            labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux' },
          },
        },
      });
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 409)) throw err;
    }
    const now = new Date().toISOString();
    const resources = { cpu: '64', memory: '256Gi', pods: '250', 'ephemeral-storage': '1Ti' };
    await this.core.patchNodeStatus(
      {
        name: this.nodeName,
        body: {
          status: {
            capacity: resources,
            allocatable: resources,
            addresses: [
              { type: 'InternalIP', address: '127.0.0.1' },
              { type: 'Hostname', address: this.nodeName },
            ],
            conditions: [
              {
                type: 'Ready',
                status: 'True',
                reason: 'KubeletReady',
                message: 'pod-runner is ready',
                lastHeartbeatTime: now,
                lastTransitionTime: now,
              },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  private async bind(pod: V1Pod): Promise<void> {
    const name = pod.metadata!.name!;
    await this.core.createNamespacedPodBinding({
      name,
      namespace: this.namespace,
      body: {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name, namespace: this.namespace, uid: pod.metadata!.uid },
        target: { apiVersion: 'v1', kind: 'Node', name: this.nodeName },
      },
    });
    this.bound.add(pod.metadata!.uid!);
    this.say(`${name}: bound to ${this.nodeName}`);
  }

  private async startPod(pod: V1Pod): Promise<void> {
    const name = pod.metadata!.name!;
    const spec = pod.spec!;
    if (spec.containers.length !== 1) throw new Error(`${name}: only single-container pods run here`);
    const container = spec.containers[0]!;
    const ip = this.ipOf(name);
    // Volumes: wait, as the kubelet does, until every claim and ConfigMap exists.
    const volumeDirs = new Map<string, string>();
    const claimNames: string[] = [];
    for (const volume of spec.volumes ?? []) {
      if (volume.persistentVolumeClaim) {
        const claim = this.claims.cache.get(volume.persistentVolumeClaim.claimName, this.namespace);
        if (claim === undefined || claim.metadata?.deletionTimestamp) {
          this.say(`${name}: waiting for claim ${volume.persistentVolumeClaim.claimName}`);
          await sleep(500);
          return; // the next sync tries again
        }
        volumeDirs.set(volume.name, this.claimDir(claim));
        claimNames.push(claim.metadata!.name!);
      } else if (volume.configMap || volume.secret) {
        if (volume.secret && !this.secrets.cache.get(volume.secret.secretName!, this.namespace)) {
          this.say(`${name}: waiting for secret ${volume.secret.secretName}`);
          await sleep(500);
          return; // the next sync tries again (the kubelet too waits for a volume's secret)
        }
        const dir = join(this.root, 'configmaps', `${pod.metadata!.uid}-${volume.name}`);
        mkdirSync(dir, { recursive: true });
        volumeDirs.set(volume.name, dir);
      } else if (volume.emptyDir) {
        const dir = join(this.root, 'claims', `empty-${pod.metadata!.uid}-${volume.name}`);
        mkdirSync(dir, { recursive: true });
        volumeDirs.set(volume.name, dir);
      } else {
        throw new Error(`${name}: volume ${volume.name} is of a kind the runner does not support`);
      }
    }
    const mounts: Array<[string, string]> = [];
    for (const m of container.volumeMounts ?? []) {
      const dir = volumeDirs.get(m.name);
      if (dir === undefined) throw new Error(`${name}: mount of unknown volume ${m.name}`);
      mounts.push([m.mountPath, m.subPath ? join(dir, m.subPath) : dir]);
    }
    // Longest mount path first, so /a/b maps before /a.
    mounts.sort((a, b) => b[0].length - a[0].length);
    const env = this.environment(pod, container, ip, mounts);
    const command = [...(container.command ?? []), ...(container.args ?? [])].map((a) =>
      mapPaths(expand(a, env), mounts),
    );
    if (command.length === 0)
      throw new Error(`${name}: no command (the image's entry point is unknown here)`);
    const logPath = join(this.root, 'logs', `${name}-${pod.metadata!.uid!.slice(0, 8)}.log`);
    const c = new Container(
      this,
      structuredClone(pod),
      ip,
      container,
      command,
      { PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`, HOME: this.root, ...env },
      logPath,
      claimNames,
      mounts,
    );
    if (this.stopped) return;
    this.containers.set(pod.metadata!.uid!, c);
    this.volumes.set(pod.metadata!.uid!, { pod, volumeDirs });
    this.refreshConfigMapVolumes();
    c.start();
  }

  /** ConfigMap volumes of running pods, by pod uid. */
  private readonly volumes = new Map<string, { pod: V1Pod; volumeDirs: Map<string, string> }>();

  /** Writes every ConfigMap and Secret volume's files (the kubelet refreshes them as the objects change). */
  private refreshConfigMapVolumes(): void {
    for (const [uid, { pod, volumeDirs }] of this.volumes) {
      if (!this.containers.has(uid)) {
        this.volumes.delete(uid);
        continue;
      }
      for (const volume of pod.spec?.volumes ?? []) {
        const source = volume.configMap ?? volume.secret;
        if (!source) continue;
        const dir = volumeDirs.get(volume.name)!;
        let data: Record<string, string>;
        if (volume.configMap)
          data = this.configMaps.cache.get(volume.configMap.name!, this.namespace)?.data ?? {};
        else {
          const secret = this.secrets.cache.get(volume.secret!.secretName!, this.namespace);
          data = Object.fromEntries(
            Object.entries(secret?.data ?? {}).map(([k, v]) => [
              k,
              Buffer.from(v, 'base64').toString('utf8'),
            ]),
          );
        }
        const items = source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
        const wanted = new Set<string>();
        for (const item of items) {
          if (!(item.key in data)) continue;
          wanted.add(item.path);
          const file = join(dir, item.path);
          const current = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
          if (current === data[item.key]) continue;
          // Atomically, as the kubelet does (a reader never sees half a file).
          writeFileSync(`${file}.tmp`, data[item.key]!);
          renameSync(`${file}.tmp`, file);
        }
        for (const f of readdirSync(dir)) if (!wanted.has(f)) rmSync(join(dir, f), { force: true });
      }
    }
  }

  /** The claim's directory (by uid: a claim deleted and created again under the same name starts empty). */
  private claimDir(claim: V1PersistentVolumeClaim): string {
    const uid = claim.metadata!.uid!;
    let entry = this.claimDirs.get(uid);
    if (entry === undefined) {
      entry = {
        name: claim.metadata!.name!,
        dir: join(this.root, 'claims', `${claim.metadata!.name}-${uid}`),
      };
      this.claimDirs.set(uid, entry);
    }
    mkdirSync(entry.dir, { recursive: true });
    return entry.dir;
  }

  /** Plays the pvc-protection controller and the volume's end: deleted claims lose their directories. */
  private async syncClaims(): Promise<void> {
    const claims = this.claims.cache.list();
    const inUse = new Set<string>();
    for (const c of this.containers.values()) for (const name of c.claims) inUse.add(name);
    const present = new Set<string>();
    for (const claim of claims) {
      const uid = claim.metadata!.uid!;
      present.add(uid);
      if (!claim.metadata?.deletionTimestamp || inUse.has(claim.metadata.name!)) continue;
      const finalizers = claim.metadata.finalizers ?? [];
      if (!finalizers.includes(PVC_PROTECTION)) continue;
      try {
        await this.core.patchNamespacedPersistentVolumeClaim(
          {
            name: claim.metadata.name!,
            namespace: this.namespace,
            body: {
              metadata: {
                finalizers: finalizers.filter((f) => f !== PVC_PROTECTION),
                resourceVersion: claim.metadata.resourceVersion,
              },
            },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.say(`claim ${claim.metadata.name}: released (no pod uses it)`);
      } catch (err) {
        if (!(err instanceof ApiException && (err.code === 404 || err.code === 409))) throw err;
      }
    }
    for (const [uid, { name, dir }] of this.claimDirs) {
      if (present.has(uid)) continue;
      this.claimDirs.delete(uid);
      rmSync(dir, { recursive: true, force: true });
      this.say(`claim ${name}: deleted, removed ${dir}`);
    }
  }

  private async terminate(pod: V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    const name = pod.metadata!.name!;
    const c = this.containers.get(uid);
    const grace = pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    if (c !== undefined) {
      await c.terminate(grace);
      await c.kill();
    }
    this.containers.delete(uid);
    try {
      await this.core.deleteNamespacedPod({
        name,
        namespace: this.namespace,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid } },
      });
      this.say(`${name}: deleted`);
    } catch (err) {
      if (!(err instanceof ApiException && (err.code === 404 || err.code === 409))) throw err;
    }
  }

  /** The container's environment as the kubelet builds it, then mapped onto this machine. */
  private environment(
    pod: V1Pod,
    container: V1Container,
    ip: string,
    mounts: Array<[string, string]>,
  ): Record<string, string> {
    const env: Record<string, string> = {};
    for (const e of container.env ?? []) {
      let value: string;
      if (e.valueFrom?.fieldRef) {
        value = fieldRef(pod, e.valueFrom.fieldRef.fieldPath, ip);
      } else if (e.valueFrom?.configMapKeyRef) {
        const ref = e.valueFrom.configMapKeyRef;
        const cm = this.configMaps.cache.get(ref.name!, this.namespace);
        const v = cm?.data?.[ref.key];
        if (v === undefined && !ref.optional) throw new Error(`${ref.name}/${ref.key} missing for ${e.name}`);
        value = v ?? '';
      } else if (e.valueFrom) {
        throw new Error(`env ${e.name}: only fieldRef and configMapKeyRef are supported`);
      } else {
        value = expand(e.value ?? '', env);
      }
      env[e.name] = value;
    }
    // Onto this machine: the pod's own address for the wildcard, pods' addresses for their DNS names,
    // local directories for mount paths.
    for (const [key, value] of Object.entries(env)) {
      let v = value === '0.0.0.0' || value === '::' ? ip : value;
      v = v.replace(
        /\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.[a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local\b/g,
        (_m, host) => this.ipOf(host),
      );
      env[key] = mapPaths(v, mounts);
    }
    return { ...env, ...this.options.extraEnv };
  }
}

/** The reported pod IP of a loopback address: 127.0.x.y -> 10.244.x.y. */
function podIPFor(loopback: string): string {
  return loopback.replace(/^127\.0\./, '10.244.');
}

function fieldRef(pod: V1Pod, path: string, ip: string): string {
  switch (path) {
    case 'metadata.name':
      return pod.metadata!.name!;
    case 'metadata.namespace':
      return pod.metadata!.namespace!;
    case 'metadata.uid':
      return pod.metadata!.uid!;
    case 'status.podIP':
      // Inside the pod, its address is the loopback one it can bind (the status shows its 10.244 twin).
      return ip;
    case 'status.hostIP':
      return '127.0.0.1';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    default: {
      const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
      if (label) return pod.metadata?.labels?.[label[1]!] ?? '';
      throw new Error(`fieldRef ${path} is not supported`);
    }
  }
}

/** Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, unknown references stay. */
export function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === '$$') return '$';
    return name !== undefined && name in env ? env[name]! : match;
  });
}

/** Replaces mount paths (longest first) where they start a path in the text. */
function mapPaths(text: string, mounts: Array<[string, string]>): string {
  let out = text;
  for (const [from, to] of mounts) {
    out = out.replace(new RegExp(`${escapeRegExp(from)}(?=$|[/"'\\s:;,])`, 'g'), to);
  }
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function resolvePort(container: V1Container, port: number | string): number {
  if (typeof port === 'number') return port;
  if (/^[0-9]+$/.test(port)) return Number(port);
  const named = container.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`container ${container.name} has no port named ${port}`);
  return named.containerPort;
}

/** Runs a hook command until it exits or the deadline passes. */
async function runHook(
  command: string[],
  env: Record<string, string>,
  cwd: string,
  deadline: number,
): Promise<void> {
  const [cmd, ...args] = command as [string, ...string[]];
  const child = spawn(cmd, args, { cwd, env, stdio: 'ignore' });
  const done = new Promise<void>((res) => {
    child.once('exit', () => res());
    child.once('error', () => res());
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), Math.max(0, deadline - Date.now()));
  await done;
  clearTimeout(timer);
}
