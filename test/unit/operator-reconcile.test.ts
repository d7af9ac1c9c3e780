import type { KubernetesObject, V1ConfigMap, V1Pod, V1Secret, V1StatefulSet } from '@kubernetes/client-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type {
  DynamoCluster,
  DynamoClusterSpecInput,
  DynamoClusterStatus,
} from '../../operator/src/api-types.js';
import type { EventRecord, KubeApi, ObjectRef } from '../../operator/src/kube.js';
import type { NodeAdmin, RingView } from '../../operator/src/node-admin.js';
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

  async getCluster(): Promise<DynamoCluster | undefined> {
    return structuredClone(this.cluster);
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
    const sameContent =
      old !== undefined &&
      canonicalJson({ ...old, metadata: undefined }) === canonicalJson({ ...rest, metadata: undefined });
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
  /** Calls a node needs before it reports 'left'. */
  stepsToLeave = 2;
  failWith: string | undefined;
  unreachable = new Set<string>();
  ringMembers = new Map<string, string>();
  private progress = new Map<string, number>();

  async decommission(url: string): Promise<NodeStatus> {
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

  async ring(): Promise<RingView> {
    return { members: [...this.ringMembers].map(([id, state]) => ({ id, state })) };
  }

  async storageBytes(): Promise<number | undefined> {
    return 1024;
  }
}

const silent = pino({ level: 'silent' });

function setup(spec: DynamoClusterSpecInput) {
  const kube = new FakeKube(spec);
  const nodes = new FakeNodes();
  const reconciler = new Reconciler({
    kube,
    nodes,
    log: silent,
    nodeUrl: (_cluster, ordinal) => `http://node-${ordinal}`,
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
