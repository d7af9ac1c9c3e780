/**
 * A real Kubernetes control plane on loopback for the operator tests (the envtest convention): etcd,
 * kube-apiserver and, on request, kube-controller-manager as child processes of the test, gone after stop().
 * There is no scheduler and no kubelet, so pods are created but stay Pending.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { freePortRange } from '../integration/harness.js';

export interface ControlPlane {
  /** A kubeconfig file for an admin (group system:masters), e.g. for kubectl --kubeconfig. */
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  /** The API server's URL, https://127.0.0.1:<port>. */
  server: string;
  /** The KUBEBUILDER_ASSETS directory the binaries came from. */
  assets: string;
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  /** Also run kube-controller-manager, for StatefulSet pods, garbage collection and Service endpoints. */
  controllerManager?: boolean;
  /** The controllers kube-controller-manager runs (default: DEFAULT_CONTROLLERS). */
  controllers?: string[];
}

/**
 * What the operator's objects need to behave as in a cluster: StatefulSets create pods, ownerReferences
 * cascade deletes, Services get endpoints, PodDisruptionBudgets get a status, namespaces can be deleted.
 */
export const DEFAULT_CONTROLLERS = [
  'statefulset-controller',
  'garbage-collector-controller',
  'endpoints-controller',
  'endpointslice-controller',
  'disruption-controller',
  'namespace-controller',
  'replicaset-controller',
  'deployment-controller',
];

const SCRIPT = resolve(import.meta.dirname, '../../hack/k8s-control-plane.sh');
const STARTUP_TIMEOUT_MS = 120_000;

/** The KUBEBUILDER_ASSETS directory: the env var when it holds the binaries, else what the script builds. */
export async function controlPlaneAssets(): Promise<string> {
  const given = process.env.KUBEBUILDER_ASSETS;
  if (given && existsSync(join(given, 'kube-apiserver')) && existsSync(join(given, 'etcd'))) return given;
  // The script's progress goes to our stderr; only its last line of stdout is the answer.
  const proc = spawn('bash', [SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  proc.stdout.on('data', (b: Buffer) => {
    stdout += b.toString();
  });
  const code = await new Promise<number | null>((res, rej) => {
    proc.once('error', rej);
    proc.once('close', res);
  });
  const dir = stdout.trim().split('\n').pop();
  if (code !== 0 || !dir) throw new Error(`${SCRIPT} failed (exit ${code}); its log is above`);
  return dir;
}

/** Starts etcd and kube-apiserver (and kube-controller-manager if asked) on free loopback ports. */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const assets = await controlPlaneAssets();
  const root = mkdtempSync(join(tmpdir(), 'dynamo-k8s-'));
  tempDirs.add(root);
  const procs: ManagedProcess[] = [];
  const stop = async () => {
    // Dependants first, so none of them logs errors about the ones already gone.
    for (const p of [...procs].reverse()) await p.terminate();
    rmSync(root, { recursive: true, force: true });
    tempDirs.delete(root);
  };
  try {
    const etcdUrl = await startEtcd(assets, root, procs);
    const { server, token, caData } = await startApiServer(assets, root, etcdUrl, procs);
    const kubeconfigPath = writeKubeconfig(root, server, token, caData);
    if (opts.controllerManager) {
      await startControllerManager(
        assets,
        root,
        kubeconfigPath,
        opts.controllers ?? DEFAULT_CONTROLLERS,
        procs,
      );
    }
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    return { kubeconfigPath, kubeConfig, server, assets, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startEtcd(assets: string, root: string, procs: ManagedProcess[]): Promise<string> {
  const port = await freePortRange(2);
  const [client, peer] = [`http://127.0.0.1:${port}`, `http://127.0.0.1:${port + 1}`];
  const etcd = ManagedProcess.start('etcd', join(assets, 'etcd'), root, [
    '--name=test',
    `--data-dir=${join(root, 'etcd-data')}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=test=${peer}`,
    '--logger=zap',
  ]);
  procs.push(etcd);
  await etcd.waitUntil(async () => {
    const res = await fetch(`${client}/health`);
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  });
  return client;
}

async function startApiServer(
  assets: string,
  root: string,
  etcdUrl: string,
  procs: ManagedProcess[],
): Promise<{ server: string; token: string; caData: string }> {
  const port = await freePortRange(1);
  const server = `https://127.0.0.1:${port}`;
  const token = randomBytes(24).toString('hex');
  // A static token for an admin in system:masters, which RBAC lets do anything.
  const tokens = join(root, 'tokens.csv');
  writeFileSync(tokens, `${token},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
  const serviceAccountKey = join(root, 'service-account.key');
  const serviceAccountPub = join(root, 'service-account.pub');
  const keys = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  writeFileSync(serviceAccountKey, keys.privateKey, { mode: 0o600 });
  writeFileSync(serviceAccountPub, keys.publicKey);
  const certDir = join(root, 'apiserver-certs');
  const apiserver = ManagedProcess.start('kube-apiserver', join(assets, 'kube-apiserver'), root, [
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${port}`,
    // With no --tls-cert-file it writes a self-signed certificate (and its CA) here.
    `--cert-dir=${certDir}`,
    `--etcd-servers=${etcdUrl}`,
    `--token-auth-file=${tokens}`,
    '--authorization-mode=RBAC',
    `--service-account-key-file=${serviceAccountPub}`,
    `--service-account-signing-key-file=${serviceAccountKey}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    '--service-cluster-ip-range=10.0.0.0/24',
    '--allow-privileged=true',
    // No token controller runs, so pods must not wait for service-account tokens.
    '--disable-admission-plugins=ServiceAccount',
    // A loopback address is not a valid endpoint for the default/kubernetes Service; nothing needs it.
    '--endpoint-reconciler-type=none',
  ]);
  procs.push(apiserver);
  let caData = '';
  await apiserver.waitUntil(async () => {
    const cert = join(certDir, 'apiserver.crt');
    if (!existsSync(cert)) return false;
    // The file holds the serving certificate and the CA that signed it; trusting both verifies the chain.
    caData = readFileSync(cert, 'utf8');
    return (await httpsGet(`${server}/readyz`, { ca: caData, token })) === 200;
  });
  return { server, token, caData: Buffer.from(caData).toString('base64') };
}

function writeKubeconfig(root: string, server: string, token: string, caData: string): string {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'test', server, caData }],
    users: [{ name: 'admin', token }],
    contexts: [{ name: 'test', cluster: 'test', user: 'admin' }],
    currentContext: 'test',
  });
  const path = join(root, 'kubeconfig');
  writeFileSync(path, kc.exportConfig(), { mode: 0o600 });
  return path;
}

async function startControllerManager(
  assets: string,
  root: string,
  kubeconfig: string,
  controllers: string[],
  procs: ManagedProcess[],
): Promise<void> {
  const binary = join(assets, 'kube-controller-manager');
  if (!existsSync(binary)) throw new Error(`${assets} has no kube-controller-manager (see ${SCRIPT})`);
  const port = await freePortRange(1);
  const certDir = join(root, 'controller-manager-certs');
  mkdirSync(certDir);
  const kcm = ManagedProcess.start('kube-controller-manager', binary, root, [
    `--kubeconfig=${kubeconfig}`,
    // Without these it cannot check who calls its own /metrics and logs warnings about it.
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    `--controllers=${controllers.join(',')}`,
    '--leader-elect=false',
    // One identity (the admin) for every controller: there is no token controller to mint others.
    '--use-service-account-credentials=false',
    '--bind-address=127.0.0.1',
    `--secure-port=${port}`,
    `--cert-dir=${certDir}`,
  ]);
  procs.push(kcm);
  // Its serving certificate is self-signed with no CA on disk; /healthz is all we ask of it.
  await kcm.waitUntil(async () => (await httpsGet(`https://127.0.0.1:${port}/healthz`, {})) === 200);
}

/** The status code of a GET, trusting ca (or, with none, any certificate: loopback only). */
function httpsGet(url: string, opts: { ca?: string; token?: string }): Promise<number> {
  return new Promise((res, rej) => {
    const req = request(url, {
      ca: opts.ca,
      rejectUnauthorized: opts.ca !== undefined,
      headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {},
      timeout: 5_000,
    });
    req.once('response', (r) => {
      r.resume();
      res(r.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.once('error', rej);
    req.end();
  });
}

// What is left when the test process exits without stop() (a failed hook, an uncaught error).
const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
// Linux's parent-death signal also covers a test process that is killed outright.
const SETPRIV = '/usr/bin/setpriv';

/** A child process whose output goes to <root>/<name>.log, quoted in errors when it fails to start. */
class ManagedProcess {
  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    private readonly logPath: string,
  ) {}

  static start(name: string, binary: string, root: string, args: string[]): ManagedProcess {
    const logPath = join(root, `${name}.log`);
    const fd = openSync(logPath, 'a');
    const [command, argv] = existsSync(SETPRIV)
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...args]]
      : [binary, args];
    const child = spawn(command, argv, { stdio: ['ignore', fd, fd], detached: false });
    closeSync(fd);
    running.add(child);
    child.once('exit', () => running.delete(child));
    // A missing binary surfaces through waitUntil, which sees the exit.
    child.once('error', () => running.delete(child));
    return new ManagedProcess(name, child, logPath);
  }

  private get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Polls ready() until it returns true; fails early, with the log's tail, if the process exits. */
  async waitUntil(ready: () => Promise<boolean>, timeoutMs = STARTUP_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exited) {
        const how = this.child.exitCode !== null ? `exit ${this.child.exitCode}` : this.child.signalCode;
        throw new Error(`${this.name} stopped during startup (${how}):\n${this.logTail()}`);
      }
      if (await ready().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${this.name} not ready after ${timeoutMs / 1000}s:\n${this.logTail()}`);
  }

  /** SIGTERM, then SIGKILL if it is still there after graceMs. */
  async terminate(graceMs = 10_000): Promise<void> {
    if (this.exited || this.child.pid === undefined) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }

  private logTail(lines = 40): string {
    const text = existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '(no log)';
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }
}
