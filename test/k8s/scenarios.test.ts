/**
 * dynamo-kv on a real single-node Kubernetes (hack/local-k8s.sh: kubelet, containerd and runc, CNI bridge,
 * kube-proxy, CoreDNS, a volume provisioner), the way a user runs it: the Helm chart installed as it is
 * (the operator as a pod, with its RBAC and the CRD), examples/cluster.yaml applied, clients through the
 * client Service with the cluster CA and a token from the operator's Secrets. Then the scenarios, in order,
 * each under a writer whose every acknowledged write must read back afterwards:
 *
 *   scale 3 -> 5 -> 3; a pod deleted (back on a new IP); cluster DNS stopped while a node joins (no second
 *   ring); a node's volume lost (rebuilt before it serves); an image change (one pod at a time); the
 *   DynamoCluster deleted (what it owns goes, the volumes stay, as the README says).
 *
 * Each scenario's duration and writes are printed at the end.
 */
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { AckedWriter, DynamoClusterHandle, Kube, type KubeList, type PodInfo, waitUntil } from './cluster.js';

const REPO = resolve(import.meta.dirname, '../..');
const OPERATOR_NS = 'dynamo-system';
const RELEASE = 'dynamo';
const NS = 'k8s-e2e';
const BUCKET = 'k8s';
const PROJECT_IMAGE = 'docker.io/library/dynamo-kv:0.1.0';
const ROLLOUT_TAG = '0.1.0-rollout';

describe('dynamo-kv on a real single-node Kubernetes', () => {
  const kube = new Kube(inject('k8s'));
  const demo = new DynamoClusterHandle(kube, NS, 'demo');
  const writers: AckedWriter[] = [];
  const results: Array<{ scenario: string; seconds: number; writes: string; lost: number }> = [];
  let scenarioStart = 0;

  const writer = (prefix: string): AckedWriter => {
    const w = new AckedWriter(demo, BUCKET, prefix);
    writers.push(w);
    return w;
  };

  /** Stops the writer, reads back every write it had acknowledged, and records the scenario. */
  const finish = async (scenario: string, w?: AckedWriter): Promise<void> => {
    let lost = 0;
    let writes = '-';
    if (w) {
      await w.stop();
      const missing = await w.verify();
      lost = missing.length;
      writes = w.summary();
      console.log(`${scenario}: ${writes}; ${lost} lost`);
      expect(missing.slice(0, 10), `${lost} acknowledged writes lost`).toEqual([]);
      expect(w.acked.size).toBeGreaterThan(0);
    }
    results.push({ scenario, seconds: Math.round((Date.now() - scenarioStart) / 1000), writes, lost });
  };

  /** Removes what a run installs; Helm never deletes a CRD, so it goes too and the next install is fresh. */
  const uninstall = async (): Promise<void> => {
    await kube.kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=true', '--timeout=300s']);
    await kube.helm(['uninstall', RELEASE, '-n', OPERATOR_NS, '--wait', '--ignore-not-found']);
    await kube.kubectl(['delete', 'namespace', OPERATOR_NS, '--ignore-not-found', '--wait=true']);
    await kube.kubectl(['delete', 'crd', 'dynamoclusters.dynamokv.io', '--ignore-not-found', '--wait=true']);
  };

  beforeAll(async () => {
    // A reused cluster may hold what an interrupted run left.
    await uninstall();
    const started = Date.now();
    await kube.helm([
      'install',
      RELEASE,
      resolve(REPO, 'charts/dynamo-kv'),
      '--namespace',
      OPERATOR_NS,
      '--create-namespace',
      '--wait',
      '--timeout',
      '5m',
    ]);
    console.log(`helm install: ${((Date.now() - started) / 1000).toFixed(0)}s`);
    await kube.kubectl(['create', 'namespace', NS]);
    await kube.kubectl(['apply', '-n', NS, '-f', resolve(REPO, 'examples/cluster.yaml')]);
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail') await demo.diagnostics(OPERATOR_NS);
  });

  afterAll(async () => {
    for (const w of writers) await w.stop();
    await demo.close();
    console.log('\nscenario | seconds | writes | lost');
    for (const r of results) console.log(`${r.scenario} | ${r.seconds} | ${r.writes} | ${r.lost}`);
    if (process.env.DYNAMO_K8S_KEEP === '1') return;
    await uninstall();
  });

  it('runs examples/cluster.yaml from the Helm-installed operator; a client writes through the Service', async () => {
    scenarioStart = Date.now();
    await waitUntil(
      "the operator to make the cluster's Secrets and client Service",
      async () => {
        await demo.loadAccess();
        return true;
      },
      5 * 60_000,
    );
    await demo.waitSettled(3);
    // Each node's rack is its Kubernetes node's zone (hack/local-k8s.sh labels the node; the API server
    // copies the label onto each pod as it is bound), so replicas spread over zones.
    const [first] = await demo.pods();
    const racks = (await demo.ring(first!)).map((m) => `${m.id}=${m.rack ?? 'none'}`);
    expect(racks.sort()).toEqual(['demo-0=local-a', 'demo-1=local-a', 'demo-2=local-a']);
    // An owned object deleted by hand is repaired at once (the operator watches it), not at the 60 s resync.
    const deleted = Date.now();
    await kube.kubectl(['delete', 'service', '-n', NS, 'demo', '--wait=true']);
    await waitUntil(
      'the client Service to be re-created',
      async () => {
        await demo.loadAccess();
        return true;
      },
      20_000,
      500,
    );
    console.log(
      `client Service re-created ${((Date.now() - deleted) / 1000).toFixed(1)}s after its deletion`,
    );
    const w = writer('install');
    w.start();
    await waitUntil('200 acknowledged writes', async () => w.acked.size >= 200, 120_000, 500);
    await finish('install and first writes', w);
  });

  it('scales 3 -> 5 -> 3 under a writer without losing an acknowledged write', async () => {
    scenarioStart = Date.now();
    const w = writer('scale');
    w.start();
    await demo.patchSpec({ nodes: 5 });
    await demo.waitSettled(5);
    await demo.patchSpec({ nodes: 3 });
    await demo.waitSettled(3);
    // The decommissioned nodes' claims go with them (retainOnScaleDown: false).
    await waitUntil(
      'the claims of demo-3 and demo-4 to be deleted',
      async () => {
        const claims = await kube.json<KubeList>(['get', 'pvc', '-n', NS]);
        const names = claims.items.map((c) => c.metadata.name);
        return !names.includes('data-demo-3') && !names.includes('data-demo-4');
      },
      120_000,
    );
    await finish('scale 3 -> 5 -> 3', w);
  });

  it('a pod deleted under load comes back on a new IP', async () => {
    scenarioStart = Date.now();
    const before = (await demo.pods()).find((p) => p.name === 'demo-1')!;
    const w = writer('pod-delete');
    w.start();
    await sleep(3_000);
    await kube.kubectl(['delete', 'pod', '-n', NS, 'demo-1', '--wait=false']);
    const after = await waitUntil(
      'demo-1 to come back',
      async () => {
        const p = (await demo.pods()).find((x) => x.name === 'demo-1');
        return p && p.uid !== before.uid && p.ready && p.ip ? p : undefined;
      },
      5 * 60_000,
    );
    console.log(`demo-1: ${before.ip} -> ${after.ip}`);
    expect(after.ip).not.toBe(before.ip);
    await demo.waitSettled(3);
    await finish('pod deleted under load', w);
  });

  it('cluster DNS stopped while a node joins: no second ring, and it joins once DNS is back', async () => {
    scenarioStart = Date.now();
    const w = writer('dns');
    w.start();
    await kube.kubectl(['scale', 'deployment', '-n', 'kube-system', 'coredns', '--replicas=0']);
    await waitUntil(
      'CoreDNS to be gone',
      async () => {
        const pods = await kube.json<{ items: unknown[] }>([
          'get',
          'pods',
          '-n',
          'kube-system',
          '-l',
          'k8s-app=kube-dns',
        ]);
        return pods.items.length === 0;
      },
      120_000,
    );
    await demo.patchSpec({ nodes: 4 });
    // While DNS is down demo-3 cannot reach a seed: it must not found a ring of its own (nor serve).
    const observeUntil = Date.now() + 75_000;
    let answered = 0;
    let sawPod = false;
    const secondRings: string[] = [];
    while (Date.now() < observeUntil) {
      const pods = await demo.pods();
      const joiner = pods.find((p) => p.name === 'demo-3');
      if (joiner?.ip) {
        sawPod = true;
        const view = await demo.ring(joiner).catch(() => undefined);
        if (view !== undefined) {
          answered++;
          const up = view.filter((m) => m.state === 'up').map((m) => m.id);
          if (up.includes('demo-3') && !up.includes('demo-0')) secondRings.push(up.join(','));
        }
        if (joiner.ready) secondRings.push('demo-3 became ready without DNS');
      }
      // No existing node may see a ring without its peers either.
      for (const p of pods.filter((x) => x.ordinal < 3 && x.ip)) {
        const view = await demo.ring(p).catch(() => undefined);
        if (view && !view.some((m) => m.id === 'demo-0' && m.state === 'up')) {
          secondRings.push(`${p.name} sees ${view.map((m) => `${m.id}:${m.state}`).join(' ')}`);
        }
      }
      await sleep(2_000);
    }
    console.log(
      `while DNS was down: demo-3 ${sawPod ? 'ran' : 'never got an IP'}, answered /admin/ring ${answered} times`,
    );
    await kube.kubectl(['scale', 'deployment', '-n', 'kube-system', 'coredns', '--replicas=1']);
    await kube.kubectl(['rollout', 'status', 'deployment', '-n', 'kube-system', 'coredns', '--timeout=180s']);
    await demo.waitSettled(4);
    expect(sawPod).toBe(true);
    expect(secondRings).toEqual([]);
    await demo.patchSpec({ nodes: 3 });
    await demo.waitSettled(3);
    await finish('DNS stopped while a node joins', w);
  });

  it('a node whose volume is lost is rebuilt before it serves', async () => {
    scenarioStart = Date.now();
    const w = writer('volume');
    w.start();
    await waitUntil('100 acknowledged writes', async () => w.acked.size >= 100, 120_000, 500);
    // Every node holds every key at n = 3 of 3 nodes: all keys acknowledged so far must be on the new volume
    // before the node answers /ready.
    const keysBefore = writers.reduce((n, x) => n + x.acked.size, 0);
    const pod = (await demo.pods()).find((p) => p.name === 'demo-2')!;
    const claim = await kube.json<{ metadata: { uid: string } }>(['get', 'pvc', '-n', NS, 'data-demo-2']);
    await kube.kubectl(['delete', 'pvc', '-n', NS, 'data-demo-2', '--wait=false']);
    await kube.kubectl(['delete', 'pod', '-n', NS, 'demo-2', '--wait=false']);
    let replacement: PodInfo | undefined;
    const states = new Set<string>();
    let notReadyAnswers = 0;
    let storageKeys = -1;
    await waitUntil(
      'the new demo-2 to answer /ready',
      async () => {
        replacement = (await demo.pods()).find((p) => p.name === 'demo-2' && p.uid !== pod.uid);
        if (!replacement?.ip) return false;
        const status = await demo.nodeFetch(replacement, '/admin/status').catch(() => undefined);
        if (status?.status === 200) states.add(((await status.json()) as { state: string }).state);
        const ready = await demo.nodeFetch(replacement, '/ready').catch(() => undefined);
        if (ready === undefined) return false;
        await ready.arrayBuffer();
        if (ready.status !== 200) {
          notReadyAnswers++;
          return false;
        }
        // The first moment it serves: what does its store hold?
        const metrics = await (await demo.nodeFetch(replacement, '/metrics')).text();
        const line = metrics.split('\n').find((l) => l.startsWith('dynamo_storage_keys'));
        storageKeys = Number(line?.split(' ').pop());
        return true;
      },
      8 * 60_000,
      250,
    );
    const newClaim = await kube.json<{ metadata: { uid: string } }>(['get', 'pvc', '-n', NS, 'data-demo-2']);
    console.log(
      `new demo-2 (${replacement?.ip}): states ${[...states].join(' -> ')}, ${notReadyAnswers} not-ready answers, ${storageKeys} keys when first ready (>= ${keysBefore} expected)`,
    );
    expect(newClaim.metadata.uid).not.toBe(claim.metadata.uid);
    expect(notReadyAnswers).toBeGreaterThan(0);
    expect(storageKeys).toBeGreaterThanOrEqual(keysBefore);
    await demo.waitSettled(3);
    await finish('volume lost, pod recreated', w);
  });

  it('an image change is rolled out one pod at a time', async () => {
    scenarioStart = Date.now();
    await kube.ctr(['images', 'tag', '--force', PROJECT_IMAGE, `docker.io/library/dynamo-kv:${ROLLOUT_TAG}`]);
    const w = writer('rollout');
    w.start();
    await demo.patchSpec({ image: `dynamo-kv:${ROLLOUT_TAG}` });
    let maxDown = 0;
    const conditions = new Set<string>();
    const order: string[] = [];
    await waitUntil(
      'every pod to run the new image',
      async () => {
        const pods = await demo.pods();
        const down = 3 - pods.filter((p) => p.ready && !p.deleting).length;
        maxDown = Math.max(maxDown, down);
        for (const p of pods)
          if (p.image?.endsWith(ROLLOUT_TAG) && p.ready && !order.includes(p.name)) order.push(p.name);
        const cr = await demo.resource();
        for (const c of cr.status?.conditions ?? []) if (c.status === 'True') conditions.add(c.type);
        return pods.length === 3 && pods.every((p) => p.ready && p.image?.endsWith(ROLLOUT_TAG));
      },
      10 * 60_000,
      1_000,
    );
    console.log(
      `rollout order ${order.join(', ')}; at most ${maxDown} pod(s) down; conditions seen: ${[...conditions].join(', ')}`,
    );
    expect(maxDown).toBeLessThanOrEqual(1);
    await demo.waitSettled(3);
    await finish('image change rolled', w);
  });

  it('every acknowledged write of every scenario still reads back', async () => {
    scenarioStart = Date.now();
    let lost = 0;
    for (const w of writers) {
      const missing = await w.verify();
      lost += missing.length;
      expect(missing.slice(0, 10), `${w.prefix}: ${missing.length} lost`).toEqual([]);
    }
    const total = writers.reduce((n, x) => n + x.acked.size, 0);
    results.push({
      scenario: 'all writes read back at the end',
      seconds: Math.round((Date.now() - scenarioStart) / 1000),
      writes: `${total} acknowledged`,
      lost,
    });
  });

  it('deleting the DynamoCluster removes what the operator made and keeps the volumes', async () => {
    scenarioStart = Date.now();
    await kube.kubectl(['delete', 'dynamocluster', '-n', NS, 'demo', '--wait=true', '--timeout=300s']);
    await waitUntil(
      'the cluster objects to be garbage collected',
      async () => {
        const left = await kube.kubectl([
          'get',
          'statefulsets,pods,services,configmaps,secrets,poddisruptionbudgets,networkpolicies',
          '-n',
          NS,
          '-l',
          'dynamokv.io/cluster=demo',
          '-o',
          'name',
        ]);
        return left.trim() === '';
      },
      300_000,
    );
    const claims = await kube.json<KubeList>(['get', 'pvc', '-n', NS]);
    const names = claims.items.map((c) => c.metadata.name).sort();
    expect(names).toEqual(['data-demo-0', 'data-demo-1', 'data-demo-2']);
    // Deleting them frees the volumes.
    await kube.kubectl(['delete', 'pvc', '-n', NS, '--all', '--wait=true']);
    await waitUntil(
      'the released volumes to be deleted',
      async () => {
        const pvs = await kube.json<KubeList>(['get', 'pv']);
        return pvs.items.every((pv) => pv.spec?.claimRef?.namespace !== NS);
      },
      120_000,
    );
    await finish('DynamoCluster deleted');
  });
});
