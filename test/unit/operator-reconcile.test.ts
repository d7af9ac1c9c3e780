import { X509Certificate } from 'node:crypto';
import type {
  KubernetesObject,
  V1ConfigMap,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Secret,
  V1StatefulSet,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  certificateValidity,
  createCa,
  issueCertificate,
  issuedBy,
} from '../../node/src/pki/certificates.js';
import type {
  DynamoCluster,
  DynamoClusterSpecInput,
  DynamoClusterStatus,
} from '../../operator/src/api-types.js';
import type { EventRecord, KubeApi, ObjectRef } from '../../operator/src/kube.js';
import type { NodeAccess, NodeAdmin, RingView } from '../../operator/src/node-admin.js';
import { tokensFile } from '../../operator/src/objects/auth.js';
import { expectedNames, secretFiles } from '../../operator/src/objects/tls.js';
import { canonicalJson, Reconciler, type StepResult } from '../../operator/src/reconcile.js';
import type { NodeStatus } from '../../operator/src/scaling.js';
import { FOUNDER_KEY, parseAssignments } from '../../operator/src/token-assignments.js';

/** An API server in memory: enough of apply, read, delete, pods and status for the reconciler. */
class FakeKube implements KubeApi {
  readonly objects = new Map<string, KubernetesObject>();
  readonly events: EventRecord[] = [];
  readonly writes: string[] = [];
  cluster: DynamoCluster;
  pods: V1Pod[] = [];
  private version = 1;

  constructor(spec: DynamoClusterSpecInput) {
    this.cluster = {
      apiVersion: 'dynamokv.io/v1alpha1',
      kind: 'DynamoCluster',
      metadata: { name: 'demo', namespace: 'ns', uid: 'uid-1', generation: 1, resourceVersion: '1' },
      spec,
    };
  }

  setSpec(spec: DynamoClusterSpecInput): void {
    this.cluster = {
      ...this.cluster,
      spec,
      metadata: { ...this.cluster.metadata, generation: (this.cluster.metadata.generation ?? 0) + 1 },
    };
  }

  private key(kind: string, namespace: string, name: string): string {
    return `${kind}/${namespace}/${name}`;
  }

  get<T extends KubernetesObject>(kind: string, name: string): T | undefined {
    return this.objects.get(this.key(kind, 'ns', name)) as T | undefined;
  }

  /** Deleted for good (no finalizer left). */
  gone = false;

  async getCluster(): Promise<DynamoCluster | undefined> {
    return this.gone ? undefined : structuredClone(this.cluster);
  }

  /** kubectl delete: the cluster is gone at once, or marked for deletion while it has finalizers. */
  deleteCluster(): void {
    if ((this.cluster.metadata.finalizers ?? []).length === 0) this.gone = true;
    else this.cluster.metadata.deletionTimestamp = new Date('2025-01-01T00:00:00Z');
  }

  async patchClusterFinalizers(
    _ns: string,
    _name: string,
    finalizers: string[],
    resourceVersion: string,
  ): Promise<DynamoCluster> {
    if (resourceVersion !== this.cluster.metadata.resourceVersion) throw new Error('409 conflict');
    this.writes.push(`finalizers ${finalizers.join(',')}`);
    this.cluster.metadata = {
      ...this.cluster.metadata,
      finalizers,
      resourceVersion: String(Number(this.cluster.metadata.resourceVersion) + 1),
    };
    if (finalizers.length === 0 && this.cluster.metadata.deletionTimestamp) this.gone = true;
    return structuredClone(this.cluster);
  }

  async listClaims(_ns: string, labelSelector: string): Promise<V1PersistentVolumeClaim[]> {
    const [key, value] = labelSelector.split('=');
    return [...this.objects.values()].filter(
      (o) => o.kind === 'PersistentVolumeClaim' && o.metadata?.labels?.[key!] === value,
    ) as V1PersistentVolumeClaim[];
  }

  async patchClusterStatus(_ns: string, _name: string, status: DynamoClusterStatus): Promise<DynamoCluster> {
    const merged: Record<string, unknown> = { ...this.cluster.status };
    for (const [k, v] of Object.entries(status)) {
      if (v === null) delete merged[k];
      else if (v !== undefined) merged[k] = v;
    }
    // Round-trip through sorted JSON, as the API server returns custom resources.
    this.cluster = { ...this.cluster, status: JSON.parse(canonicalJson(merged)) };
    this.writes.push('status');
    return structuredClone(this.cluster);
  }

  async read<T extends KubernetesObject>(ref: ObjectRef): Promise<T | undefined> {
    const found = this.objects.get(this.key(ref.kind, ref.namespace, ref.name));
    return found === undefined ? undefined : (structuredClone(found) as T);
  }

  async apply<T extends KubernetesObject>(object: T): Promise<T> {
    const key = this.key(object.kind ?? '', object.metadata?.namespace ?? '', object.metadata?.name ?? '');
    const old = this.objects.get(key);
    const expected = object.metadata?.resourceVersion;
    if (expected !== undefined && old?.metadata?.resourceVersion !== expected)
      throw new Error('409 conflict');
    const { metadata, ...rest } = structuredClone(object) as KubernetesObject & Record<string, unknown>;
    // Content and annotations: what an apply can change (labels and owners never change here).
    const sameContent =
      old !== undefined &&
      canonicalJson({ ...old, metadata: old.metadata?.annotations }) ===
        canonicalJson({ ...rest, metadata: metadata?.annotations });
    if (sameContent) return structuredClone(old) as T;
    const stored = {
      ...rest,
      metadata: {
        ...metadata,
        resourceVersion: String(++this.version),
        generation: (old?.metadata?.generation ?? 0) + 1,
      },
    } as KubernetesObject;
    this.objects.set(key, stored);
    this.writes.push(`apply ${object.kind}`);
    return structuredClone(stored) as T;
  }

  async remove(ref: ObjectRef): Promise<boolean> {
    this.writes.push(`delete ${ref.kind} ${ref.name}`);
    return this.objects.delete(this.key(ref.kind, ref.namespace, ref.name));
  }

  async listPods(): Promise<V1Pod[]> {
    return structuredClone(this.pods);
  }

  async recordEvent(_cluster: DynamoCluster, event: EventRecord): Promise<void> {
    this.events.push(event);
  }

  /** What the StatefulSet controller and kubelet would do: one pod per replica, ready when `ready` says so. */
  runPods(ready: (ordinal: number) => boolean): void {
    const replicas = this.get<V1StatefulSet>('StatefulSet', 'demo')?.spec?.replicas ?? 0;
    this.pods = Array.from({ length: replicas }, (_, i) => ({
      metadata: { name: `demo-${i}`, namespace: 'ns', labels: { 'dynamokv.io/cluster': 'demo' } },
      status: {
        podIP: `10.0.0.${i + 1}`,
        conditions: [{ type: 'Ready', status: ready(i) ? 'True' : 'False' }],
      },
    }));
  }
}

/** Nodes answering the admin API: each decommission call moves a leaving node one step towards 'left'. */
class FakeNodes implements NodeAdmin {
  readonly decommissionCalls: string[] = [];
  /** Every call's URL and access (CA, server name, token). */
  readonly calls: Array<{ url: string; access?: NodeAccess }> = [];
  /** Calls a node needs before it reports 'left'. */
  stepsToLeave = 2;
  failWith: string | undefined;
  unreachable = new Set<string>();
  ringMembers = new Map<string, string>();
  private progress = new Map<string, number>();

  async decommission(url: string, access?: NodeAccess): Promise<NodeStatus> {
    this.calls.push({ url, access });
    if (this.unreachable.has(url)) throw new Error(`connect ECONNREFUSED ${url}`);
    this.decommissionCalls.push(url);
    const step = (this.progress.get(url) ?? 0) + 1;
    this.progress.set(url, step);
    if (this.failWith) {
      return {
        state: 'leaving',
        stream: { kind: 'decommission', rangesTotal: 10, rangesPending: 4, error: this.failWith },
      };
    }
    if (step >= this.stepsToLeave)
      return { state: 'left', stream: { kind: 'decommission', rangesTotal: 10, rangesPending: 0 } };
    return { state: 'leaving', stream: { kind: 'decommission', rangesTotal: 10, rangesPending: 10 - step } };
  }

  async status(): Promise<NodeStatus> {
    return { state: 'up', stream: null };
  }

  async ring(url: string, _tokens?: boolean, access?: NodeAccess): Promise<RingView> {
    this.calls.push({ url, access });
    return { members: [...this.ringMembers].map(([id, state]) => ({ id, state })) };
  }

  async storageBytes(): Promise<number | undefined> {
    return 1024;
  }
}

const silent = pino({ level: 'silent' });

function setup(spec: DynamoClusterSpecInput, clock?: { now: Date }) {
  const kube = new FakeKube(spec);
  const nodes = new FakeNodes();
  const reconciler = new Reconciler({
    kube,
    nodes,
    log: silent,
    nodeUrl: (_cluster, ordinal) => `http://node-${ordinal}`,
    ...(clock ? { now: () => clock.now } : {}),
  });
  const reconcile = (): Promise<StepResult> => reconciler.reconcile('ns', 'demo');
  const replicas = (): number | undefined => kube.get<V1StatefulSet>('StatefulSet', 'demo')?.spec?.replicas;
  const tokens = () => parseAssignments(kube.get<V1ConfigMap>('ConfigMap', 'demo-tokens')?.data);
  return { kube, nodes, reconcile, replicas, tokens };
}

const SMALL = { nodes: 3, tokensPerNode: 8 };

/** Reconciles, with every pod ready, until the cluster settles (or the pass limit is hit). */
async function settle(env: ReturnType<typeof setup>, passes = 30): Promise<void> {
  for (let i = 0; i < passes; i++) {
    env.kube.runPods(() => true);
    const result = await env.reconcile();
    if (result.kind === 'done') return;
  }
}

describe('Reconciler', () => {
  it('creates the owned objects with ownerReferences and starts with a single node', async () => {
    const env = setup(SMALL);
    const result = await env.reconcile();
    expect(result.kind).toBe('requeue');
    for (const [kind, name] of [
      ['StatefulSet', 'demo'],
      ['Service', 'demo'],
      ['Service', 'demo-peers'],
      ['ConfigMap', 'demo-tokens'],
      ['PodDisruptionBudget', 'demo'],
    ] as const) {
      const object = env.kube.get(kind, name);
      expect(object, `${kind} ${name}`).toBeDefined();
      expect(object?.metadata?.ownerReferences?.[0]).toMatchObject({
        kind: 'DynamoCluster',
        uid: 'uid-1',
        controller: true,
      });
    }
    expect(env.replicas()).toBe(1);
    expect([...env.tokens().keys()]).toEqual(['demo-0']);
    expect(env.kube.cluster.status).toMatchObject({
      phase: 'Creating',
      observedGeneration: 1,
      nodes: 1,
      readyNodes: 0,
    });
    expect(env.kube.events.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['Created', 'TokensAssigned', 'ScalingUp']),
    );
  });

  it('writes the tokens of a node before the StatefulSet that starts it', async () => {
    const env = setup(SMALL);
    await env.reconcile();
    const writes = env.kube.writes;
    expect(writes.indexOf('apply ConfigMap')).toBeLessThan(writes.indexOf('apply StatefulSet'));
  });

  it('adds nodes one at a time, each only after the ones before it are ready', async () => {
    const env = setup(SMALL);
    await env.reconcile();
    env.kube.runPods(() => false);
    await env.reconcile();
    expect(env.replicas()).toBe(1);
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(env.replicas()).toBe(2);
    env.kube.runPods((i) => i < 1);
    await env.reconcile();
    expect(env.replicas()).toBe(2);
    await settle(env);
    expect(env.replicas()).toBe(3);
    expect(env.kube.cluster.status).toMatchObject({ phase: 'Ready', readyNodes: 3, nodes: 3 });
    const ready = env.kube.cluster.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.status).toBe('True');
  });

  it('gives added nodes new tokens and never changes the tokens of existing nodes', async () => {
    const env = setup(SMALL);
    await settle(env);
    const before = env.tokens();
    env.kube.setSpec({ ...SMALL, nodes: 5 });
    await settle(env);
    const after = env.tokens();
    expect(env.replicas()).toBe(5);
    expect([...after.keys()].sort()).toEqual(['demo-0', 'demo-1', 'demo-2', 'demo-3', 'demo-4']);
    for (const [node, tokens] of before) expect(after.get(node)).toEqual(tokens);
    const all = [...after.values()].flat();
    expect(new Set(all).size).toBe(5 * 8);
  });

  it('scales down by decommissioning the highest ordinal first and shrinks only after it has left', async () => {
    const env = setup({ ...SMALL, nodes: 5 });
    await settle(env);
    env.kube.setSpec({ ...SMALL, nodes: 3 });
    env.nodes.stepsToLeave = 3;

    // Pass 1: the intent is recorded in status before the node is asked anything.
    await env.reconcile();
    expect(env.kube.cluster.status?.decommissioning).toMatchObject({ node: 'demo-4', ordinal: 4 });
    expect(env.nodes.decommissionCalls).toEqual([]);
    expect(env.replicas()).toBe(5);

    // Passes 2-3: the node is leaving; the StatefulSet keeps it.
    await env.reconcile();
    await env.reconcile();
    expect(env.nodes.decommissionCalls).toEqual(['http://node-4', 'http://node-4']);
    expect(env.replicas()).toBe(5);
    expect(env.kube.cluster.status?.phase).toBe('Decommissioning');
    expect(env.kube.cluster.status?.decommissioning).toMatchObject({ state: 'leaving', rangesPending: 8 });

    // Pass 4: it reports left, so the StatefulSet drops it.
    await env.reconcile();
    expect(env.replicas()).toBe(4);
    // The pod is gone; its claim and tokens are removed and the record cleared.
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(env.kube.writes).toContain('delete PersistentVolumeClaim data-demo-4');
    expect(env.tokens().has('demo-4')).toBe(false);
    expect(env.kube.cluster.status?.decommissioning).toBeUndefined();

    await settle(env);
    expect(env.replicas()).toBe(3);
    expect(env.nodes.decommissionCalls.filter((u) => u === 'http://node-3').length).toBeGreaterThan(0);
    expect(env.nodes.decommissionCalls.indexOf('http://node-3')).toBeGreaterThan(
      env.nodes.decommissionCalls.lastIndexOf('http://node-4'),
    );
    expect([...env.tokens().keys()].sort()).toEqual(['demo-0', 'demo-1', 'demo-2']);
    expect(env.kube.cluster.status?.phase).toBe('Ready');
  });

  it('keeps the claim of a decommissioned node when retainOnScaleDown is set', async () => {
    const env = setup({ ...SMALL, nodes: 4, storage: { retainOnScaleDown: true } });
    await settle(env);
    env.kube.setSpec({ ...SMALL, nodes: 3, storage: { retainOnScaleDown: true } });
    env.nodes.stepsToLeave = 1;
    await settle(env);
    expect(env.replicas()).toBe(3);
    expect(env.kube.writes.some((w) => w.startsWith('delete PersistentVolumeClaim'))).toBe(false);
    expect(env.kube.events.map((e) => e.reason)).toContain('VolumeRetained');
    // It left, so its tokens went with its data: scaled up again, it joins anew with new ones (its node
    // clears the retained volume first: --rejoin-after-leave).
    expect(env.tokens().has('demo-3')).toBe(false);
  });

  it('stops the scale-down and says why when the decommission fails', async () => {
    const env = setup({ ...SMALL, nodes: 4 });
    await settle(env);
    env.kube.setSpec({ ...SMALL, nodes: 3 });
    env.nodes.failWith = 'stream to demo-1 timed out';
    for (let i = 0; i < 5; i++) await env.reconcile();
    expect(env.replicas()).toBe(4);
    const status = env.kube.cluster.status;
    expect(status?.decommissioning?.error).toMatch(/stream to demo-1 timed out/);
    expect(status?.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'DecommissionStalled',
    });
    expect(env.kube.events).toContainEqual(
      expect.objectContaining({ type: 'Warning', reason: 'DecommissionFailed' }),
    );
  });

  it('never shrinks past an unreachable node that the ring still lists', async () => {
    const env = setup({ ...SMALL, nodes: 4 });
    await settle(env);
    env.kube.setSpec({ ...SMALL, nodes: 3 });
    await env.reconcile(); // records the intent
    env.nodes.unreachable.add('http://node-3');
    env.nodes.ringMembers = new Map([
      ['demo-0', 'up'],
      ['demo-1', 'up'],
      ['demo-2', 'up'],
      ['demo-3', 'down'],
    ]);
    for (let i = 0; i < 4; i++) await env.reconcile();
    expect(env.replicas()).toBe(4);
    expect(env.kube.cluster.status?.conditions?.find((c) => c.type === 'Decommissioning')?.message).toMatch(
      /still a ring member \(down\)/,
    );
  });

  it('keeps the claim and tokens of a node the StatefulSet lost before it had left (scaled by hand), and says why', async () => {
    const env = setup({ ...SMALL, nodes: 4 });
    await settle(env);
    const assigned = env.tokens().get('demo-3');
    env.kube.setSpec({ ...SMALL, nodes: 3 });
    env.nodes.stepsToLeave = 100;
    await env.reconcile(); // records the intent
    await env.reconcile(); // demo-3 is leaving
    expect(env.kube.cluster.status?.decommissioning).toMatchObject({ node: 'demo-3', state: 'leaving' });
    // Someone (a GitOps revert, kubectl scale, an HPA) shrinks the StatefulSet; the pod goes.
    const sts = env.kube.get<V1StatefulSet>('StatefulSet', 'demo')!;
    sts.spec!.replicas = 3;
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(env.kube.writes).not.toContain('delete PersistentVolumeClaim data-demo-3');
    expect(env.kube.events).toContainEqual(
      expect.objectContaining({
        type: 'Warning',
        reason: 'VolumeKept',
        message: expect.stringMatching(/kept data-demo-3: .*last state: leaving/),
      }),
    );
    // Its volume holds these tokens: scaled up again, it comes back with them (a node refuses others).
    expect(env.tokens().get('demo-3')).toEqual(assigned);
    env.kube.setSpec({ ...SMALL, nodes: 4 });
    await settle(env);
    expect(env.replicas()).toBe(4);
    expect(env.tokens().get('demo-3')).toEqual(assigned);
  });

  it('keeps the claim of a member an admin removed: it may hold the last copy of writes and hints', async () => {
    const env = setup({ ...SMALL, nodes: 4 });
    await settle(env);
    env.kube.setSpec({ ...SMALL, nodes: 3 });
    await env.reconcile(); // records the intent
    env.nodes.unreachable.add('http://node-3');
    env.nodes.ringMembers = new Map([
      ['demo-0', 'up'],
      ['demo-1', 'up'],
      ['demo-2', 'up'],
      ['demo-3', 'removed'],
    ]);
    for (let i = 0; i < 6 && env.kube.cluster.status?.decommissioning; i++) {
      env.kube.runPods((o) => o < 3);
      await env.reconcile();
    }
    expect(env.replicas()).toBe(3);
    expect(env.kube.writes).not.toContain('delete PersistentVolumeClaim data-demo-3');
    expect(env.kube.events.map((e) => e.reason)).toContain('VolumeKept');
  });

  it('drops an unreachable node that never joined the ring (a scale-up reverted before it started)', async () => {
    const env = setup({ ...SMALL, nodes: 3 });
    await settle(env);
    env.kube.setSpec({ ...SMALL, nodes: 4 });
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(env.replicas()).toBe(4);
    env.kube.runPods((i) => i < 3); // demo-3 never becomes ready
    env.nodes.unreachable.add('http://node-3');
    env.nodes.ringMembers = new Map([
      ['demo-0', 'up'],
      ['demo-1', 'up'],
      ['demo-2', 'up'],
    ]);
    env.kube.setSpec({ ...SMALL, nodes: 3 });
    for (let i = 0; i < 4 && env.replicas() === 4; i++) {
      env.kube.runPods((o) => o < 3);
      await env.reconcile();
    }
    expect(env.replicas()).toBe(3);
    // It never held data: its claim goes.
    for (let i = 0; i < 4 && env.kube.cluster.status?.decommissioning; i++) {
      env.kube.runPods((o) => o < 3);
      await env.reconcile();
    }
    expect(env.kube.writes).toContain('delete PersistentVolumeClaim data-demo-3');
  });

  it('refuses nodes below replication.n as an invalid spec and keeps every node', async () => {
    const env = setup({ ...SMALL, nodes: 3 });
    await settle(env);
    env.kube.setSpec({ ...SMALL, nodes: 2 });
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(env.replicas()).toBe(3);
    expect(env.nodes.decommissionCalls).toEqual([]);
    const valid = env.kube.cluster.status?.conditions?.find((c) => c.type === 'Valid');
    expect(valid).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(valid?.message).toMatch(/spec.nodes \(2\) must be at least spec.replication.n \(3\)/);
    expect(env.kube.cluster.status?.phase).toBe('Invalid');
    expect(env.kube.events).toContainEqual(
      expect.objectContaining({ type: 'Warning', reason: 'InvalidSpec' }),
    );
  });

  it('refuses a scale-down whose remaining nodes could not hold the data, with Valid=False and a Warning', async () => {
    const env = setup({ ...SMALL, nodes: 4, storage: { size: '1Gi' } });
    await settle(env);
    env.nodes.storageBytes = async () => 0.7 * 2 ** 30; // 2.8 GiB over 3 nodes: 0.93 GiB each, over 80%
    env.kube.setSpec({ ...SMALL, nodes: 3, storage: { size: '1Gi' } });
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(env.replicas()).toBe(4);
    expect(env.kube.cluster.status?.decommissioning).toBeUndefined();
    expect(env.nodes.decommissionCalls).toEqual([]);
    expect(env.kube.cluster.status?.conditions?.find((c) => c.type === 'Valid')).toMatchObject({
      status: 'False',
      reason: 'ScaleDownRefused',
    });
    expect(env.kube.events).toContainEqual(
      expect.objectContaining({ type: 'Warning', reason: 'ScaleDownRefused' }),
    );
  });

  it('does not rewrite an unchanged status or record the same event twice', async () => {
    const env = setup(SMALL);
    await settle(env);
    const writes = env.kube.writes.length;
    const events = env.kube.events.length;
    await env.reconcile();
    await env.reconcile();
    expect(env.kube.writes.length).toBe(writes);
    expect(env.kube.events.length).toBe(events);
  });

  it('rebuilds a lost token ConfigMap from the ring instead of handing out new tokens', async () => {
    const env = setup(SMALL);
    await settle(env);
    const before = env.tokens();
    env.kube.objects.delete('ConfigMap/ns/demo-tokens');
    env.nodes.ring = async () => ({
      members: [...before].map(([id, tokens]) => ({ id, state: 'up', tokens })),
    });
    await env.reconcile();
    expect(env.tokens()).toEqual(before);
    expect(env.kube.events.map((e) => e.reason)).toContain('TokensRecovered');
    expect(founder(env)).toBeUndefined();
  });

  it('names the first node founder of a new cluster, and drops the designation once a node is ready', async () => {
    const env = setup(SMALL);
    await env.reconcile();
    expect(founder(env)).toBe('demo-0');
    // Not ready yet (pod 0 may still be starting, or restarting): the designation stays.
    env.kube.runPods(() => false);
    await env.reconcile();
    expect(founder(env)).toBe('demo-0');
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(founder(env)).toBeUndefined();
    // Never again: a later node, or pod 0 restarted on an empty volume, joins the cluster that exists.
    await settle(env);
    expect(env.replicas()).toBe(3);
    expect(founder(env)).toBeUndefined();
    expect([...env.tokens().keys()]).toEqual(['demo-0', 'demo-1', 'demo-2']);
  });

  it('reports a node that cannot start, with its own reason, as Degraded and one Warning event', async () => {
    // A new cluster meeting the old volume of a cluster of the same name: pod 0 refuses its tokens.
    const env = setup(SMALL);
    await env.reconcile();
    const message =
      "token_mismatch: node demo-0's data directory (/var/lib/dynamo) holds the 256 tokens it claimed before, but --initial-tokens assigns it 8 tokens, 8 of them not among those";
    env.kube.runPods(() => false);
    env.kube.pods[0]!.status!.containerStatuses = [
      {
        name: 'dynamo',
        image: 'dynamo-kv',
        imageID: '',
        ready: false,
        restartCount: 4,
        state: { waiting: { reason: 'CrashLoopBackOff' } },
        lastState: { terminated: { exitCode: 2, message } },
      },
    ];
    await env.reconcile();
    await env.reconcile();
    const status = env.kube.cluster.status;
    expect(status?.phase).toBe('Degraded');
    expect(status?.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'TokenMismatch',
      message: `demo-0 cannot start (restarted 4 times): ${message}`,
    });
    expect(env.kube.events.filter((e) => e.reason === 'TokenMismatch')).toEqual([
      { type: 'Warning', reason: 'TokenMismatch', message: `demo-0 cannot start: ${message}` },
    ]);
    // Once the node serves (its volume emptied), the cluster is no longer degraded.
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(env.kube.cluster.status?.conditions?.find((c) => c.type === 'Degraded')?.status).toBe('False');
  });
});

describe('volumes when a cluster is deleted, or created again', () => {
  /** A claim as the StatefulSet controller makes it, labelled with its cluster. */
  function claim(env: ReturnType<typeof setup>, name: string, cluster = 'demo'): void {
    env.kube.objects.set(`PersistentVolumeClaim/ns/${name}`, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, namespace: 'ns', labels: { 'dynamokv.io/cluster': cluster } },
    });
  }

  it('with volumesOnDelete: Delete, deletes the StatefulSet, waits for the pods, deletes the claims, then lets the cluster go', async () => {
    const env = setup({ ...SMALL, storage: { volumesOnDelete: 'Delete' } });
    await env.reconcile();
    expect(env.kube.cluster.metadata.finalizers).toEqual(['dynamokv.io/delete-volumes']);
    await settle(env);
    for (const name of ['data-demo-0', 'data-demo-1', 'data-demo-2', 'data-demo-5']) claim(env, name);
    claim(env, 'data-demo-extra');
    claim(env, 'data-other-0', 'other');
    env.kube.deleteCluster();

    const first = await env.reconcile();
    expect(first).toMatchObject({ kind: 'requeue', reason: 'waiting for StatefulSet demo to be deleted' });
    expect(env.kube.writes).toContain('delete StatefulSet demo');
    // The garbage collector takes the pods away in its own time; the claims wait for them.
    const second = await env.reconcile();
    expect(second).toMatchObject({
      kind: 'requeue',
      reason: expect.stringMatching(/waiting for pods demo-0/),
    });
    expect(env.kube.writes.filter((w) => w.startsWith('delete PersistentVolumeClaim'))).toEqual([]);
    env.kube.pods = [];
    expect(await env.reconcile()).toMatchObject({ kind: 'done' });
    expect(env.kube.writes.filter((w) => w.startsWith('delete PersistentVolumeClaim')).sort()).toEqual([
      'delete PersistentVolumeClaim data-demo-0',
      'delete PersistentVolumeClaim data-demo-1',
      'delete PersistentVolumeClaim data-demo-2',
      'delete PersistentVolumeClaim data-demo-5',
    ]);
    expect(env.kube.get('PersistentVolumeClaim', 'data-other-0')).toBeDefined();
    expect(env.kube.get('PersistentVolumeClaim', 'data-demo-extra')).toBeDefined();
    expect(env.kube.events).toContainEqual({
      type: 'Normal',
      reason: 'VolumesDeleted',
      message: 'deleted data-demo-0, data-demo-1, data-demo-2, data-demo-5 (volumesOnDelete: Delete)',
    });
    expect(env.kube.gone).toBe(true);
  });

  it('keeps the claims by default: no finalizer, the cluster goes at once', async () => {
    const env = setup(SMALL);
    await settle(env);
    expect(env.kube.cluster.metadata.finalizers ?? []).toEqual([]);
    claim(env, 'data-demo-0');
    env.kube.deleteCluster();
    expect(env.kube.gone).toBe(true);
    expect(await env.reconcile()).toMatchObject({ kind: 'done', reason: 'cluster deleted' });
    expect(env.kube.writes.some((w) => w.startsWith('delete'))).toBe(false);
  });

  it('warns once when a new cluster finds claims an earlier cluster of its name kept', async () => {
    const env = setup(SMALL);
    claim(env, 'data-demo-1');
    claim(env, 'data-demo-0');
    await env.reconcile();
    await settle(env);
    expect(env.kube.events.filter((e) => e.reason === 'VolumesFound')).toEqual([
      {
        type: 'Warning',
        reason: 'VolumesFound',
        message: expect.stringMatching(/^data-demo-0, data-demo-1 already exist .*token_mismatch/),
      },
    ]);
  });

  it('drops the finalizer when the policy goes back to Retain, even while the cluster is being deleted', async () => {
    const env = setup({ ...SMALL, storage: { volumesOnDelete: 'Delete' } });
    await settle(env);
    env.kube.setSpec({ ...SMALL, storage: { volumesOnDelete: 'Retain' } });
    await env.reconcile();
    expect(env.kube.cluster.metadata.finalizers).toEqual([]);
    env.kube.setSpec({ ...SMALL, storage: { volumesOnDelete: 'Delete' } });
    await env.reconcile();
    env.kube.deleteCluster();
    env.kube.setSpec({ ...SMALL, storage: { volumesOnDelete: 'Retain' } });
    claim(env, 'data-demo-0');
    expect(await env.reconcile()).toMatchObject({ kind: 'done' });
    expect(env.kube.gone).toBe(true);
    expect(env.kube.writes.some((w) => w.startsWith('delete'))).toBe(false);
  });
});

describe('the context secret', () => {
  it('is created once, mounted into every node (which gets no service account token), and never replaced', async () => {
    const env = setup(SMALL);
    await env.reconcile();
    const secret = () => env.kube.get<V1Secret>('Secret', 'demo-context-secret');
    const first = secret()?.data?.['context-secret'];
    expect(Buffer.from(first ?? '', 'base64').toString()).toMatch(/^[0-9a-f]{64}$/);
    expect(secret()?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'DynamoCluster',
      controller: true,
    });
    await settle(env);
    expect(secret()?.data?.['context-secret']).toBe(first);
    const pod = env.kube.get<V1StatefulSet>('StatefulSet', 'demo')!.spec!.template.spec!;
    expect(pod.volumes).toContainEqual(
      expect.objectContaining({ secret: expect.objectContaining({ secretName: 'demo-context-secret' }) }),
    );
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.containers[0]!.env).toContainEqual({
      name: 'DYNAMO_CONTEXT_SECRET_FILE',
      value: '/etc/dynamo/secrets/context-secret',
    });
  });
});

const founder = (env: ReturnType<typeof setup>) =>
  env.kube.get<V1ConfigMap>('ConfigMap', 'demo-tokens')?.data?.[FOUNDER_KEY];

/** The decoded files of a Secret in the fake API server. */
function files(env: ReturnType<typeof setup>, name: string): Record<string, string> {
  return secretFiles(env.kube.get<V1Secret>('Secret', name));
}

describe('certificates and client tokens', () => {
  it('creates the CA, a certificate for each node before its pod, and the tokens; a re-run changes none of them', async () => {
    const env = setup(SMALL);
    await env.reconcile();
    const ca = files(env, 'demo-ca');
    expect(ca['tls.crt']).toMatch(/BEGIN CERTIFICATE/);
    expect(ca['tls.key']).toMatch(/BEGIN PRIVATE KEY/);
    // One node so far, and its certificate exists already.
    expect(env.replicas()).toBe(1);
    let tls = files(env, 'demo-tls');
    expect(Object.keys(tls).sort()).toEqual(['ca.crt', 'demo-0.crt', 'demo-0.key']);
    expect(tls['ca.crt']).toBe(ca['tls.crt']);
    expect(issuedBy(tls['demo-0.crt']!, ca['tls.crt']!)).toBe(true);
    expect(new X509Certificate(tls['demo-0.crt']!).subject).toBe('CN=demo-0');
    const auth = files(env, 'demo-auth');
    expect(Object.keys(auth).sort()).toEqual([
      'admin-token',
      'operator-token',
      'read-token',
      'tokens',
      'write-token',
    ]);

    // Each scale-up step writes the next node's certificate before the StatefulSet that starts it.
    for (let i = 0; i < 30 && env.replicas() !== 3; i++) {
      env.kube.runPods(() => true);
      const before = env.replicas() ?? 0;
      await env.reconcile();
      const after = env.replicas() ?? 0;
      tls = files(env, 'demo-tls');
      for (let o = 0; o < after; o++)
        expect(tls[`demo-${o}.crt`], `demo-${o} at ${after} replicas`).toBeDefined();
      if (after > before)
        expect(env.kube.writes.lastIndexOf('apply Secret')).toBeLessThan(
          env.kube.writes.lastIndexOf('apply StatefulSet'),
        );
    }
    await settle(env);
    tls = files(env, 'demo-tls');
    expect(Object.keys(tls).sort()).toEqual([
      'ca.crt',
      'demo-0.crt',
      'demo-0.key',
      'demo-1.crt',
      'demo-1.key',
      'demo-2.crt',
      'demo-2.key',
    ]);
    for (const pod of ['demo-0', 'demo-1', 'demo-2']) {
      expect(issuedBy(tls[`${pod}.crt`]!, ca['tls.crt']!)).toBe(true);
      expect(new X509Certificate(tls[`${pod}.crt`]!).subject).toBe(`CN=${pod}`);
    }
    const writes = env.kube.writes.length;
    for (let i = 0; i < 3; i++) {
      env.kube.runPods(() => true);
      await env.reconcile();
    }
    expect(env.kube.writes.slice(writes)).toEqual([]);
    expect(files(env, 'demo-ca')).toEqual(ca);
    expect(files(env, 'demo-tls')).toEqual(tls);
    expect(files(env, 'demo-auth')).toEqual(auth);
    expect(env.kube.events.filter((e) => e.reason === 'CertificatesIssued')).toHaveLength(3);
    const status = env.kube.cluster.status?.tls;
    expect(status?.mode).toBe('operator');
    expect(new Date(status!.caNotAfter!).getTime()).toBeGreaterThan(Date.now() + 3000 * 86_400_000);
    expect(new Date(status!.certificatesNotAfter!).getTime()).toBeGreaterThan(Date.now() + 89 * 86_400_000);
  });

  it('calls the nodes over https with the cluster CA, the pod’s DNS name and its own token', async () => {
    const env = setup(SMALL);
    await settle(env);
    const { calls } = env.nodes;
    expect(calls.length).toBeGreaterThan(0);
    const ca = files(env, 'demo-ca')['tls.crt'];
    const token = files(env, 'demo-auth')['operator-token'];
    for (const call of calls) {
      const ordinal = Number(call.url.slice('http://node-'.length));
      expect(call.access).toEqual({
        ca,
        serverName: `demo-${ordinal}.demo-peers.ns.svc.cluster.local`,
        token,
      });
    }
  });

  it('asks the node URL resolver for https with TLS and http without', async () => {
    for (const [mode, scheme] of [
      ['operator', 'https'],
      ['disabled', 'http'],
    ] as const) {
      const kube = new FakeKube({ ...SMALL, tls: { mode } });
      const schemes = new Set<string>();
      const reconciler = new Reconciler({
        kube,
        nodes: new FakeNodes(),
        log: silent,
        nodeUrl: (_c, ordinal, _ip, s) => {
          schemes.add(s);
          return `${s}://node-${ordinal}`;
        },
      });
      for (let i = 0; i < 10; i++) {
        kube.runPods(() => true);
        await reconciler.reconcile('ns', 'demo');
      }
      expect([...schemes]).toEqual([scheme]);
    }
  });

  it('renews node certificates at two thirds of their lifetime, says so, and keeps the CA and the tokens', async () => {
    const clock = { now: new Date() };
    const env = setup(SMALL, clock);
    await settle(env);
    const before = files(env, 'demo-tls');
    const ca = files(env, 'demo-ca');
    const auth = files(env, 'demo-auth');
    clock.now = new Date(clock.now.getTime() + 59 * 86_400_000);
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(files(env, 'demo-tls')).toEqual(before);

    clock.now = new Date(clock.now.getTime() + 2 * 86_400_000);
    env.kube.runPods(() => true);
    await env.reconcile();
    const after = files(env, 'demo-tls');
    for (const pod of ['demo-0', 'demo-1', 'demo-2']) {
      expect(after[`${pod}.crt`]).not.toBe(before[`${pod}.crt`]);
      expect(after[`${pod}.key`]).not.toBe(before[`${pod}.key`]);
      expect(issuedBy(after[`${pod}.crt`]!, ca['tls.crt']!)).toBe(true);
      expect(certificateValidity(after[`${pod}.crt`]!).notAfter.getTime()).toBeGreaterThan(
        clock.now.getTime() + 89 * 86_400_000,
      );
    }
    expect(files(env, 'demo-ca')).toEqual(ca);
    expect(files(env, 'demo-auth')).toEqual(auth);
    const event = env.kube.events.find((e) => e.reason === 'CertificateRenewed');
    expect(event?.message).toMatch(/demo-0 \(expiring\), demo-1 \(expiring\), demo-2 \(expiring\)/);
    expect(env.kube.cluster.status?.tls?.lastRenewal).toEqual({
      at: clock.now.toISOString(),
      nodes: ['demo-0', 'demo-1', 'demo-2'],
    });
    // The pod template did not change: no restart, the nodes re-read the files.
    expect(env.kube.writes.slice(-3)).not.toContain('apply StatefulSet');
  });

  it('never replaces an existing CA: certificates come from it, and a broken one stops the cluster with a Warning', async () => {
    const own = createCa('my own CA', 365);
    const env = setup(SMALL);
    const caSecret = (data: Record<string, string>): V1Secret => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'demo-ca', namespace: 'ns' },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    });
    await env.kube.apply(caSecret({ 'tls.crt': own.cert, 'tls.key': own.key }));
    await settle(env);
    expect(files(env, 'demo-ca')).toEqual({ 'tls.crt': own.cert, 'tls.key': own.key });
    expect(issuedBy(files(env, 'demo-tls')['demo-2.crt']!, own.cert)).toBe(true);

    const broken = setup(SMALL);
    await broken.kube.apply(caSecret({ 'tls.crt': 'garbage' }));
    const result = await broken.reconcile();
    expect(result).toMatchObject({ kind: 'requeue', reason: 'invalid CA Secret' });
    expect(files(broken, 'demo-ca')).toEqual({ 'tls.crt': 'garbage' });
    expect(broken.kube.get('Secret', 'demo-tls')).toBeUndefined();
    expect(broken.replicas()).toBeUndefined();
    expect(broken.kube.events).toContainEqual(
      expect.objectContaining({ type: 'Warning', reason: 'InvalidCA' }),
    );
  });

  it('keeps a user’s edit of the tokens Secret', async () => {
    const env = setup(SMALL);
    await env.reconcile();
    const secret = env.kube.get<V1Secret>('Secret', 'demo-auth')!;
    const edited = tokensFile({ admin: ['mine-0123456789abcdef'], write: [], read: [] });
    await env.kube.apply({
      ...secret,
      metadata: { ...secret.metadata, resourceVersion: undefined },
      data: {
        tokens: Buffer.from(edited).toString('base64'),
        'admin-token': Buffer.from('mine-0123456789abcdef').toString('base64'),
      },
    });
    await settle(env);
    expect(files(env, 'demo-auth')).toEqual({ tokens: edited, 'admin-token': 'mine-0123456789abcdef' });
    // Its own token gone, the operator uses the admin one.
    expect(env.nodes.calls.at(-1)?.access?.token).toBe('mine-0123456789abcdef');
  });

  it('drops the certificate of a decommissioned node once its pod is gone', async () => {
    const env = setup({ ...SMALL, nodes: 4 });
    await settle(env);
    expect(files(env, 'demo-tls')['demo-3.crt']).toBeDefined();
    env.kube.setSpec({ ...SMALL, nodes: 3 });
    env.nodes.stepsToLeave = 1;
    await settle(env);
    expect(env.replicas()).toBe(3);
    expect(Object.keys(files(env, 'demo-tls')).sort()).toEqual([
      'ca.crt',
      'demo-0.crt',
      'demo-0.key',
      'demo-1.crt',
      'demo-1.key',
      'demo-2.crt',
      'demo-2.key',
    ]);
  });

  it('makes no certificate, token or mount when both are off', async () => {
    const env = setup({ ...SMALL, tls: { mode: 'disabled' }, auth: { enabled: false } });
    await settle(env);
    expect(env.replicas()).toBe(3);
    for (const name of ['demo-ca', 'demo-tls', 'demo-auth'])
      expect(env.kube.get('Secret', name), name).toBeUndefined();
    expect(env.kube.cluster.status?.tls).toEqual({ mode: 'disabled' });
    expect(env.nodes.calls.length).toBeGreaterThan(0);
    expect(env.nodes.calls.every((c) => c.access !== undefined && Object.keys(c.access).length === 0)).toBe(
      true,
    );
  });

  it('keeps a running cluster’s TLS mode when the spec changes it, with a Warning', async () => {
    const env = setup({ ...SMALL, tls: { mode: 'disabled' } });
    await settle(env);
    const template = env.kube.get<V1StatefulSet>('StatefulSet', 'demo')!.spec!.template;
    env.kube.setSpec({ ...SMALL, tls: { mode: 'operator' } });
    await settle(env);
    expect(env.kube.get<V1StatefulSet>('StatefulSet', 'demo')!.spec!.template).toEqual(template);
    expect(env.kube.get('Secret', 'demo-tls')).toBeUndefined();
    expect(env.kube.events).toContainEqual(
      expect.objectContaining({ type: 'Warning', reason: 'TLSModeUnchanged' }),
    );
    expect(env.kube.cluster.status?.tls?.mode).toBe('disabled');

    // A StatefulSet from before TLS existed (no annotation), whose spec now defaults to operator mode, runs
    // plain and stays so.
    const legacy = setup({ ...SMALL, tls: { mode: 'disabled' } });
    await settle(legacy);
    const stored = legacy.kube.get<V1StatefulSet>('StatefulSet', 'demo')!;
    delete stored.metadata!.annotations;
    legacy.kube.setSpec(SMALL);
    await settle(legacy);
    expect(legacy.kube.get('Secret', 'demo-tls')).toBeUndefined();
    const after = legacy.kube.get<V1StatefulSet>('StatefulSet', 'demo')!;
    expect(after.metadata?.annotations?.['dynamokv.io/tls-mode']).toBe('disabled');
    expect(after.spec?.template).toEqual(template);
  });

  it('cert-manager mode: a Certificate per node, no pod before its Secret is issued, the files copied for the pods', async () => {
    const env = setup({ ...SMALL, tls: { mode: 'cert-manager', issuerRef: { name: 'ca-issuer' } } });
    const result = await env.reconcile();
    expect(result).toMatchObject({ kind: 'requeue', reason: 'waiting for cert-manager to issue demo-0' });
    const certificate = env.kube.get<KubernetesObject & { spec: { commonName: string; secretName: string } }>(
      'Certificate',
      'demo-0-tls',
    );
    expect(certificate?.spec).toMatchObject({ commonName: 'demo-0', secretName: 'demo-0-tls' });
    expect(env.replicas()).toBeUndefined();
    expect(env.kube.get('Secret', 'demo-ca')).toBeUndefined();

    // Plays cert-manager: every Certificate gets its Secret, issued by the issuer's CA.
    const issuer = createCa('issuer CA', 365);
    const issue = async (): Promise<void> => {
      for (let o = 0; o < 4; o++) {
        const cert = env.kube.get<
          KubernetesObject & { spec: { secretName: string; commonName: string; dnsNames: string[] } }
        >('Certificate', `demo-${o}-tls`);
        if (!cert || env.kube.get('Secret', cert.spec.secretName)) continue;
        const pair = issueCertificate(issuer, {
          commonName: cert.spec.commonName,
          dnsNames: cert.spec.dnsNames,
          days: 90,
        });
        await env.kube.apply({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: cert.spec.secretName, namespace: 'ns' },
          data: Object.fromEntries(
            Object.entries({ 'tls.crt': pair.cert, 'tls.key': pair.key, 'ca.crt': issuer.cert }).map(
              ([k, v]) => [k, Buffer.from(v).toString('base64')],
            ),
          ),
        } as V1Secret);
      }
    };
    for (let i = 0; i < 40 && env.replicas() !== 3; i++) {
      await issue();
      env.kube.runPods(() => true);
      await env.reconcile();
    }
    await settle(env);
    expect(env.replicas()).toBe(3);
    const tls = files(env, 'demo-tls');
    expect(tls['ca.crt']?.trim()).toBe(issuer.cert.trim());
    for (const pod of ['demo-0', 'demo-1', 'demo-2']) {
      expect(tls[`${pod}.crt`]).toBe(files(env, `${pod}-tls`)['tls.crt']);
      expect(issuedBy(tls[`${pod}.crt`]!, issuer.cert)).toBe(true);
    }
    expect(env.kube.cluster.status?.tls?.mode).toBe('cert-manager');

    // cert-manager renews demo-1: the operator copies it and says so.
    const renewed = issueCertificate(issuer, { ...expectedNames(env.kube.cluster, 1), days: 90 });
    const source = env.kube.get<V1Secret>('Secret', 'demo-1-tls')!;
    await env.kube.apply({
      ...source,
      metadata: { ...source.metadata, resourceVersion: undefined },
      data: {
        ...source.data,
        'tls.crt': Buffer.from(renewed.cert).toString('base64'),
        'tls.key': Buffer.from(renewed.key).toString('base64'),
      },
    });
    env.kube.runPods(() => true);
    await env.reconcile();
    expect(files(env, 'demo-tls')['demo-1.crt']).toBe(renewed.cert);
    expect(env.kube.events).toContainEqual(expect.objectContaining({ reason: 'CertificateRenewed' }));
    expect(env.kube.cluster.status?.tls?.lastRenewal?.nodes).toEqual(['demo-1']);
  });
});
