/**
 * End to end without Docker: a real control plane (etcd, kube-apiserver, kube-controller-manager), the CRD from
 * crds/, the operator in-process, and test/e2e/pod-runner.ts as scheduler and kubelet, which runs every pod of the
 * StatefulSet as a real node process on its own loopback address. A 3-node DynamoCluster is created, scaled to 5
 * and back to 3 while a writer writes through the client Service's endpoints (its EndpointSlices, filled by the
 * endpointslice controller from the pods' readiness), and then every acknowledged write must still be readable,
 * the ring must hold exactly the 3 remaining nodes with the tokens the operator recorded, and the decommissioned
 * nodes' volumes must be gone. The cluster runs as the operator makes it by default: mutual TLS between nodes,
 * HTTPS and client tokens, all from the Secrets it generated; the test's client trusts only the cluster CA,
 * checks each node's certificate against the pod's DNS name, and sends the admin token. Last, a node
 * certificate near its expiry is renewed by the operator and taken up by the running node on both ports while
 * a writer runs, and no request fails. The phases' durations are printed for the release notes.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkServerIdentity, type PeerCertificate, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { issueCertificate, needsRenewal } from '../../node/src/pki/certificates.js';
import type { DynamoCluster } from '../../operator/src/api-types.js';
import { type RunningOperator, startOperator } from '../../operator/src/controller.js';
import { podName } from '../../operator/src/names.js';
import { expectedNames } from '../../operator/src/objects/tls.js';
import { parseAssignments } from '../../operator/src/token-assignments.js';
import { AckChecker } from '../integration/ack-checker.js';
import { CLI, type Fetch, metric, waitFor } from '../integration/harness.js';
import { type ControlPlane, startControlPlane } from '../operator/control-plane.js';
import { GROUP, waitForCrdServed } from '../operator/fixtures.js';
import { PodRunner, REPO_ROOT } from './pod-runner.js';

const BUILD_TIMEOUT_MS = 45 * 60_000;
const NS = 'e2e';
const NAME = 'demo';
const HTTP_PORT = 8080;
const PEER_PORT = 7070;
const DAY = 86_400_000;

describe('a DynamoCluster on a real control plane with real node processes', () => {
  let cp: ControlPlane | undefined;
  let runner: PodRunner | undefined;
  let operator: RunningOperator | undefined;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let discovery: DiscoveryV1Api;
  let endpointTimer: NodeJS.Timeout | undefined;
  let writer: { stop: () => Promise<number> } | undefined;
  const logDir = mkdtempSync(join(tmpdir(), 'dynamo-e2e-'));
  const operatorLog = join(logDir, 'operator.log');
  /** The cluster CA and admin token, read from the Secrets the operator made once the cluster exists. */
  let ca = '';
  let token = '';
  let agent: Agent | undefined;
  /** fetch over HTTPS trusting only the cluster CA, the node's certificate checked for its pod's DNS name. */
  const tlsFetch = (url: string, init: RequestInit = {}, withToken = true): Promise<Response> => {
    agent ??= new Agent({
      connect: {
        ca,
        // Pods listen on loopback addresses here; a pod's certificate names its DNS name, which that address stands for.
        checkServerIdentity: (host: string, cert: PeerCertificate) =>
          checkServerIdentity(podDnsOf(host), cert),
      },
    });
    const headers = {
      ...(init.headers as Record<string, string>),
      ...(withToken ? { authorization: `Bearer ${token}` } : {}),
    };
    return undiciFetch(url, {
      ...(init as object),
      headers,
      dispatcher: agent,
    }) as unknown as Promise<Response>;
  };
  const secure: Fetch = (url, init) => tlsFetch(url, init);
  const checker = new AckChecker('e2e', secure);
  /** The client Service's ready endpoints, as base URLs (refreshed every 500 ms while the writer runs). */
  let clientUrls: string[] = [];
  const durations: Record<string, number> = {};

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} missing: run npm run build first`);
    cp = await startControlPlane({ controllerManager: true });
    custom = cp.kubeConfig.makeApiClient(CustomObjectsApi);
    core = cp.kubeConfig.makeApiClient(CoreV1Api);
    discovery = cp.kubeConfig.makeApiClient(DiscoveryV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    // The CRD as users install it (kubectl parses YAML as Go does, and keeps every x-kubernetes-* field).
    await promisify(execFile)(join(cp.assets, 'kubectl'), [
      '--kubeconfig',
      cp.kubeconfigPath,
      'apply',
      '--server-side',
      '-f',
      join(REPO_ROOT, 'crds'),
    ]);
    await waitForCrdServed(cp.kubeConfig, NS);
    runner = new PodRunner({
      kubeConfig: cp.kubeConfig,
      namespace: NS,
      ...(process.env.DYNAMO_TEST_LOG ? { log: (line: string) => console.log(line) } : {}),
    });
    await runner.start();
    const r = runner;
    operator = await startOperator({
      kubeConfig: cp.kubeConfig,
      log: pino({ level: 'info' }, pino.destination({ dest: operatorLog, sync: true })),
      leaderElection: false,
      watchNamespace: NS,
      // The loopback address behind the pod IP the runner reports (or, before it reports one, the pod's).
      nodeUrl: (cluster, ordinal, podIP, scheme) =>
        `${scheme}://${podIP ? r.toLoopback(podIP) : r.ipOf(podName(cluster.metadata.name, ordinal))}:${HTTP_PORT}`,
      resyncMs: 5_000,
    });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    if (endpointTimer !== undefined) clearInterval(endpointTimer);
    await writer?.stop().catch(() => undefined);
    await operator?.stop().catch((err) => console.error('operator stop:', err));
    await agent?.close().catch(() => undefined);
    await runner?.stop().catch((err) => console.error('pod runner stop:', err));
    await cp?.stop().catch((err) => console.error('control plane stop:', err));
    rmSync(logDir, { recursive: true, force: true });
  }, 120_000);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    try {
      const slices = await discovery.listNamespacedEndpointSlice({ namespace: NS });
      const brief = slices.items.map((sl) => ({
        name: sl.metadata?.name,
        service: sl.metadata?.labels?.['kubernetes.io/service-name'],
        ports: sl.ports?.map((p) => `${p.name}:${p.port}`),
        endpoints: (sl.endpoints ?? []).map(
          (e) => `${e.addresses.join('/')} ${JSON.stringify(e.conditions)}`,
        ),
      }));
      console.error(`--- endpoint slices\n${JSON.stringify(brief, null, 1)}`);
      const events = await core.listNamespacedEvent({ namespace: NS });
      const warnings = events.items.filter((e) => e.type === 'Warning').slice(-15);
      console.error(
        `--- warning events\n${warnings.map((e) => `${e.involvedObject.kind}/${e.involvedObject.name} ${e.reason}: ${e.message}`).join('\n')}`,
      );
    } catch (err) {
      console.error('could not list endpoint slices:', err);
    }
    const tail = (text: string, n: number) => text.trimEnd().split('\n').slice(-n).join('\n');
    console.error(`--- pod runner\n${tail(runner?.events.join('\n') ?? '', 60)}`);
    console.error(
      `--- operator\n${existsSync(operatorLog) ? tail(readFileSync(operatorLog, 'utf8'), 40) : ''}`,
    );
    console.error(`--- node logs\n${runner?.logs(15) ?? ''}`);
  });

  /** The pod DNS name behind one of the runner's loopback addresses (127.0.<subnet>.<ordinal + 1>). */
  function podDnsOf(host: string): string {
    const ordinal = Number(host.split('.')[3]) - 1;
    if (!Number.isInteger(ordinal) || ordinal < 0) return host;
    const pod = podName(NAME, ordinal);
    if (runner?.ipOf(pod) !== host) return host;
    return `${pod}.${NAME}-peers.${NS}.svc.cluster.local`;
  }

  const secretFiles = async (name: string): Promise<Record<string, string>> => {
    const secret: V1Secret = await core.readNamespacedSecret({ name, namespace: NS });
    return Object.fromEntries(
      Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
    );
  };

  /** SHA-256 fingerprint of the certificate a node serves on a port (the peer port asks for a client certificate). */
  async function servedFingerprint(
    host: string,
    port: number,
    client?: { cert: string; key: string },
  ): Promise<string> {
    const socket = tlsConnect({
      host,
      port,
      ca,
      ...client,
      checkServerIdentity: (_h, cert) => checkServerIdentity(podDnsOf(host), cert),
    });
    try {
      await once(socket, 'secureConnect');
      return socket.getPeerCertificate().fingerprint256;
    } finally {
      socket.destroy();
    }
  }

  const getCluster = async () =>
    (await custom.getNamespacedCustomObject({ ...GROUP, namespace: NS, name: NAME })) as DynamoCluster;

  /** Waits until the cluster's status says Ready with `nodes` ready nodes, for the current generation. */
  async function waitReady(nodes: number, timeoutMs: number): Promise<void> {
    let last = '';
    try {
      await waitFor(
        `the cluster Ready with ${nodes} nodes`,
        async () => {
          const c = await getCluster();
          const s = c.status;
          last = JSON.stringify({
            phase: s?.phase,
            nodes: s?.nodes,
            ready: s?.readyNodes,
            members: s?.members,
          });
          return (
            s?.observedGeneration === c.metadata.generation &&
            s?.phase === 'Ready' &&
            s.nodes === nodes &&
            s.readyNodes === nodes &&
            !s.decommissioning
          );
        },
        timeoutMs,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last status ${last}`);
    }
  }

  async function scaleTo(nodes: number): Promise<void> {
    await custom.patchNamespacedCustomObject(
      { ...GROUP, namespace: NS, name: NAME, body: { spec: { nodes } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** Ready endpoints of the client Service, from its EndpointSlices. */
  async function readyEndpoints(): Promise<string[]> {
    const slices = await discovery.listNamespacedEndpointSlice({
      namespace: NS,
      labelSelector: `kubernetes.io/service-name=${NAME}`,
    });
    const urls: string[] = [];
    for (const slice of slices.items) {
      const port = slice.ports?.find((p) => p.name === 'http')?.port;
      if (port === undefined) continue;
      for (const e of slice.endpoints ?? []) {
        if (e.conditions?.ready !== true) continue;
        for (const address of e.addresses) urls.push(`https://${runner!.toLoopback(address)}:${port}`);
      }
    }
    return urls.sort();
  }

  async function ringOf(url: string) {
    const res = await tlsFetch(`${url}/admin/ring?tokens=true`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    return (await res.json()) as {
      members: Array<{ id: string; state: string; tokenCount: number; tokens: string[] }>;
    };
  }

  it('brings up a 3-node cluster whose client Service has 3 ready endpoints', async () => {
    const started = Date.now();
    await custom.createNamespacedCustomObject({
      ...GROUP,
      namespace: NS,
      body: {
        apiVersion: 'dynamokv.io/v1alpha1',
        kind: 'DynamoCluster',
        metadata: { name: NAME },
        spec: {
          nodes: 3,
          // Never pulled: the pod runner runs this repository's build.
          image: 'dynamo-kv:e2e',
          tokensPerNode: 16,
          replication: { n: 3, r: 2, w: 2 },
          seeds: 3,
          storage: { size: '1Gi' },
        },
      },
    });
    await waitReady(3, 240_000);
    durations['3 nodes ready'] = Date.now() - started;
    console.log(`e2e: 3-node cluster Ready in ${(durations['3 nodes ready'] / 1000).toFixed(1)} s`);
    // TLS and tokens are on by default; the client gets the CA and the admin token from the operator's Secrets.
    expect((await getCluster()).status?.tls?.mode).toBe('operator');
    ca = (await secretFiles(`${NAME}-tls`))['ca.crt']!;
    token = (await secretFiles(`${NAME}-auth`))['admin-token']!;
    expect(ca).toBe((await secretFiles(`${NAME}-ca`))['tls.crt']);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const r = runner!;
    const expected = [0, 1, 2].map((i) => `https://${r.ipOf(podName(NAME, i))}:${HTTP_PORT}`).sort();
    await waitFor(
      '3 ready endpoints',
      async () => (await readyEndpoints()).join() === expected.join(),
      30_000,
    );
    // Through the Service's endpoints: a write and a read on different nodes.
    const urls = await readyEndpoints();
    expect(await checker.write(urls[0]!, 'hello', 'world')).toBe(true);
    const read = await tlsFetch(`${urls[2]}/buckets/e2e/keys/hello`);
    expect(read.status).toBe(200);
    expect(await read.text()).toBe('world');
    // Without the token: 401. Each node serves the certificate the operator issued for it, on both ports.
    const anonymous = await tlsFetch(`${urls[2]}/buckets/e2e/keys/hello`, {}, false);
    expect(anonymous.status).toBe(401);
    await anonymous.arrayBuffer();
    const tls = await secretFiles(`${NAME}-tls`);
    const client = { cert: tls[`${podName(NAME, 0)}.crt`]!, key: tls[`${podName(NAME, 0)}.key`]! };
    for (let i = 0; i < 3; i++) {
      const pod = podName(NAME, i);
      const want = new X509Certificate(tls[`${pod}.crt`]!).fingerprint256;
      expect(await servedFingerprint(r.ipOf(pod), HTTP_PORT), pod).toBe(want);
      expect(await servedFingerprint(r.ipOf(pod), PEER_PORT, client), pod).toBe(want);
    }
  }, 300_000);

  it('scales to 5 and back to 3 under a writer, losing no acknowledged write', async () => {
    clientUrls = await readyEndpoints();
    expect(clientUrls).toHaveLength(3);
    endpointTimer = setInterval(() => {
      readyEndpoints().then(
        (urls) => {
          if (urls.length > 0) clientUrls = urls;
        },
        () => undefined,
      );
    }, 500);
    const used = new Set<string>();
    writer = checker.runWriter(() => {
      for (const url of clientUrls) used.add(url);
      return clientUrls;
    }, 'w');
    const ackedAt: number[] = [checker.size];

    let started = Date.now();
    await scaleTo(5);
    await waitReady(5, 300_000);
    durations['3 -> 5'] = Date.now() - started;
    console.log(
      `e2e: scaled 3 -> 5 in ${(durations['3 -> 5'] / 1000).toFixed(1)} s (acked so far: ${checker.size})`,
    );
    await waitFor('5 ready endpoints', async () => (await readyEndpoints()).length === 5, 30_000);
    ackedAt.push(checker.size);
    const removedClaims = ['data-demo-3', 'data-demo-4'];
    const dirs = runner!.claimDirectories();
    for (const claim of removedClaims) expect(dirs.has(claim), claim).toBe(true);

    started = Date.now();
    await scaleTo(3);
    await waitReady(3, 300_000);
    durations['5 -> 3'] = Date.now() - started;
    console.log(
      `e2e: scaled 5 -> 3 in ${(durations['5 -> 3'] / 1000).toFixed(1)} s (acked so far: ${checker.size})`,
    );

    await writer.stop();
    writer = undefined;
    clearInterval(endpointTimer);
    endpointTimer = undefined;
    console.log(
      `e2e: ${checker.attempts} writes attempted, ${checker.size} acknowledged, ${checker.refused} refused`,
    );
    ackedAt.push(checker.size);
    // Writes were acknowledged while scaling up and while scaling down, through all 5 nodes' endpoints.
    expect(ackedAt[1]! - ackedAt[0]!).toBeGreaterThan(50);
    expect(ackedAt[2]! - ackedAt[1]!).toBeGreaterThan(50);
    expect(used.size).toBe(5);

    // Every acknowledged write, read back through each remaining node.
    const remaining = [0, 1, 2].map((i) => `https://${runner!.ipOf(podName(NAME, i))}:${HTTP_PORT}`);
    for (const url of remaining) {
      const missing = await checker.verify(url);
      expect(missing.slice(0, 10), `${missing.length} acknowledged writes missing via ${url}`).toEqual([]);
    }

    // The ring: exactly the 3 remaining nodes, up, with the tokens the operator recorded.
    const tokens = parseAssignments(
      (await core.readNamespacedConfigMap({ name: `${NAME}-tokens`, namespace: NS })).data,
    );
    const names = [0, 1, 2].map((i) => podName(NAME, i));
    expect([...tokens.keys()].sort()).toEqual(names);
    const status = (await getCluster()).status;
    expect(status?.members?.map((m) => [m.name, m.tokens])).toEqual(names.map((n) => [n, 16]));
    for (const url of remaining) {
      const ring = await ringOf(url);
      const members = [...ring.members].sort((a, b) => a.id.localeCompare(b.id));
      expect(
        members.map((m) => [m.id, m.state]),
        url,
      ).toEqual(names.map((n) => [n, 'up']));
      for (const m of members) {
        expect(m.tokenCount).toBe(16);
        expect([...m.tokens].sort(), `${m.id} via ${url}`).toEqual([...tokens.get(m.id)!].sort());
      }
    }

    // With n=3 on 3 nodes every node is a replica of every key: each holds all acknowledged keys (and maybe
    // some writes that failed to reach w, which may have landed anyway).
    for (const url of remaining) {
      await waitFor(
        `${url} to hold every acknowledged key`,
        async () => (await metric(url, /^dynamo_storage_keys\{/, secure)) >= checker.size,
        30_000,
      );
    }
    // The decommissions streamed data to the remaining nodes, and the operator reported no trouble.
    let streamedIn = 0;
    for (const url of remaining)
      streamedIn += await metric(url, /^dynamo_stream_bytes_total\{direction="in"/, secure);
    expect(streamedIn).toBeGreaterThan(0);
    const events = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: `involvedObject.kind=DynamoCluster,involvedObject.name=${NAME}`,
    });
    const warnings = events.items.filter((e) => e.type === 'Warning').map((e) => `${e.reason}: ${e.message}`);
    expect(warnings).toEqual([]);
    const reasons = events.items.map((e) => `${e.reason} ${e.message}`);
    for (const node of ['demo-3', 'demo-4']) {
      for (const reason of ['DecommissionStarted', 'NodeLeft', 'Decommissioned']) {
        expect(
          reasons.some((r) => r.startsWith(reason) && r.includes(node)),
          `${reason} for ${node}`,
        ).toBe(true);
      }
    }

    // Only the 3 pods remain; the decommissioned nodes' claims and their data are gone.
    const pods = await core.listNamespacedPod({ namespace: NS });
    expect(pods.items.map((p) => p.metadata!.name!).sort()).toEqual(names);
    const sts = await cp!.kubeConfig
      .makeApiClient(AppsV1Api)
      .readNamespacedStatefulSet({ name: NAME, namespace: NS });
    expect(sts.spec?.replicas).toBe(3);
    for (const claim of removedClaims) {
      await waitFor(
        `${claim} deleted`,
        async () => {
          try {
            await core.readNamespacedPersistentVolumeClaim({ name: claim, namespace: NS });
            return false;
          } catch (err) {
            return err instanceof ApiException && err.code === 404;
          }
        },
        30_000,
      );
      const dir = dirs.get(claim)!;
      await waitFor(`${dir} removed`, async () => !existsSync(dir), 10_000);
    }
  }, 660_000);

  it('renews a node certificate near its expiry under a writer: the node takes it up on both ports, no request fails', async () => {
    const r = runner!;
    const pod = podName(NAME, 1);
    const host = r.ipOf(pod);
    const cluster = await getCluster();
    // demo-1 gets a certificate of the cluster CA issued 80 days ago, as if the operator had been away: valid,
    // but past two thirds of its 90 days.
    const caFiles = await secretFiles(`${NAME}-ca`);
    const old = issueCertificate(
      { cert: caFiles['tls.crt']!, key: caFiles['tls.key']! },
      { ...expectedNames(cluster, 1), days: 90, now: new Date(Date.now() - 80 * DAY) },
    );
    const oldFingerprint = new X509Certificate(old.cert).fingerprint256;
    await core.patchNamespacedSecret(
      {
        name: `${NAME}-tls`,
        namespace: NS,
        body: { stringData: { [`${pod}.crt`]: old.cert, [`${pod}.key`]: old.key } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const started = Date.now();
    const urls = [0, 1, 2].map((i) => `https://${r.ipOf(podName(NAME, i))}:${HTTP_PORT}`);
    const refusedBefore = checker.refused;
    const ackedBefore = checker.size;
    writer = checker.runWriter(() => urls, 'rotation');
    // The operator renews it on its next pass (every 5 s here); the node re-reads its files within 5 s.
    let renewed = '';
    await waitFor(
      `the operator to renew ${pod}`,
      async () => {
        const cert = (await secretFiles(`${NAME}-tls`))[`${pod}.crt`]!;
        if (new X509Certificate(cert).fingerprint256 === oldFingerprint || needsRenewal(cert)) return false;
        renewed = cert;
        return true;
      },
      60_000,
    );
    const want = new X509Certificate(renewed).fingerprint256;
    const tls = await secretFiles(`${NAME}-tls`);
    const client = { cert: tls[`${podName(NAME, 0)}.crt`]!, key: tls[`${podName(NAME, 0)}.key`]! };
    await waitFor(
      `${pod} to serve its renewed certificate on both ports`,
      async () => {
        return (
          (await servedFingerprint(host, HTTP_PORT)) === want &&
          (await servedFingerprint(host, PEER_PORT, client)) === want
        );
      },
      60_000,
    );
    durations['certificate renewal taken up'] = Date.now() - started;
    // A few more seconds of writes with every node on its current certificate.
    await new Promise((res) => setTimeout(res, 3_000));
    await writer.stop();
    writer = undefined;
    const acked = checker.size - ackedBefore;
    console.log(
      `e2e: renewal of ${pod} taken up in ${(durations['certificate renewal taken up'] / 1000).toFixed(1)} s; ${acked} writes acknowledged meanwhile, ${checker.refused - refusedBefore} refused`,
    );
    expect(acked).toBeGreaterThan(50);
    expect(checker.refused - refusedBefore).toBe(0);
    for (const url of urls) {
      const missing = await checker.verify(url);
      expect(missing.slice(0, 10), `${missing.length} acknowledged writes missing via ${url}`).toEqual([]);
    }
    const events = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: `involvedObject.kind=DynamoCluster,involvedObject.name=${NAME}`,
    });
    expect(
      events.items.some((e) => e.reason === 'CertificateRenewed' && e.message?.includes(`${pod} (expiring)`)),
    ).toBe(true);
    expect((await getCluster()).status?.tls?.lastRenewal?.nodes).toEqual([pod]);
    console.log(`e2e durations (ms): ${JSON.stringify(durations)}`);
  }, 180_000);
});
