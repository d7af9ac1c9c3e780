// Reconciling one DynamoCluster: a sequence of named steps, each safe to run again, each returning continue,
// requeue-after or done (as cass-operator does). Every reconcile starts from a fresh read of the API server; the
// status (phase, conditions, members, observedGeneration) is written at the end whichever step stopped it.
import type { KubernetesObject, V1ConfigMap, V1Pod, V1Secret, V1StatefulSet } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { certificateValidity, createCa, issueCertificate } from '../../node/src/pki/certificates.js';
import type {
  DecommissionRecord,
  DynamoCluster,
  DynamoClusterSpec,
  DynamoClusterStatus,
  TlsMode,
  TlsStatus,
} from './api-types.js';
import { apiErrorMessage, type EventRecord, type KubeApi, type ObjectRef } from './kube.js';
import {
  authSecretName,
  caSecretName,
  certificateName,
  contextSecretName,
  LABEL_CLUSTER,
  ordinalOf,
  podHost,
  podName,
  pvcName,
  statefulSetName,
  tlsSecretName,
  tokenConfigMapName,
} from './names.js';
import type { NodeAccess, NodeAdmin, NodeUrlResolver } from './node-admin.js';
import { failureEvent, type NodeFailure, nodeFailures } from './node-failures.js';
import { buildAuthSecret, operatorToken } from './objects/auth.js';
import { buildPodDisruptionBudget } from './objects/disruption-budget.js';
import { buildNetworkPolicy } from './objects/network-policy.js';
import { buildContextSecret } from './objects/secrets.js';
import { buildClientService, buildPeerService } from './objects/services.js';
import {
  buildStatefulSet,
  claimedStorage,
  keepImmutableFields,
  TLS_MODE_ANNOTATION,
  tlsOn,
} from './objects/statefulset.js';
import {
  buildCaSecret,
  buildCertManagerCertificate,
  buildNodeTlsSecret,
  CA_CERT_KEY,
  CA_DAYS,
  CERT_MANAGER_API_VERSION,
  caCommonName,
  caFromSecret,
  certFileKey,
  earliestExpiry,
  expectedNames,
  filesFromIssued,
  keyFileKey,
  NODE_CERTIFICATE_DAYS,
  planNodeCertificates,
  secretFiles,
} from './objects/tls.js';
import { buildTokenConfigMap } from './objects/token-config-map.js';
import {
  checkCapacity,
  decideDecommission,
  type PodView,
  planScaling,
  type ScalingDecision,
} from './scaling.js';
import { parseQuantity, TLS_MODES, validateSpec, withDefaults } from './spec.js';
import { buildStatus } from './status.js';
import { assignTokens, FOUNDER_KEY, parseAssignments, type TokenAssignments } from './token-assignments.js';
import { ClusterVolumes } from './volumes.js';

export type StepResult =
  | { kind: 'continue' }
  | { kind: 'requeue'; afterMs: number; reason: string }
  | { kind: 'done'; reason: string };

const CONTINUE: StepResult = { kind: 'continue' };
const requeue = (afterMs: number, reason: string): StepResult => ({ kind: 'requeue', afterMs, reason });

/** Everything one reconcile has read and decided so far. */
export interface ReconcileContext {
  cluster: DynamoCluster;
  spec: DynamoClusterSpec;
  problems: string[];
  statefulSet?: V1StatefulSet;
  tokenConfigMap?: V1ConfigMap;
  tokens: TokenAssignments;
  pods: PodView[];
  /** Node pods that keep failing with a reason (node-failures.ts). */
  nodeFailures?: NodeFailure[];
  decision?: ScalingDecision;
  decommissioning: DecommissionRecord | null;
  decommissionProblem?: string;
  ringStates?: Map<string, string>;
  /** The TLS mode the user asked for, when the nodes run with another (spec.tls.mode holds the one in effect). */
  requestedTlsMode?: TlsMode;
  /** The `<cluster>-tls` Secret as last read or written. */
  tlsSecret?: V1Secret;
  /** The CA the nodes' HTTPS certificates chain to, and the operator's token: how it reaches the nodes. */
  access: { ca?: string; token?: string };
  /** Node certificates renewed in this pass. */
  renewed?: string[];
  /** Look again this soon even if every step finished (certificates left for a later pass). */
  followUpMs?: number;
}

export interface Step {
  name: string;
  run(ctx: ReconcileContext): Promise<StepResult>;
}

export interface ReconcilerDeps {
  kube: KubeApi;
  nodes: NodeAdmin;
  nodeUrl: NodeUrlResolver;
  log: Logger;
  now?: () => Date;
  /**
   * The namespace the operator runs in: a cluster with spec.network.clientFrom admits the operator's pods there
   * to the nodes' HTTP port (default: the cluster's own namespace).
   */
  operatorNamespace?: string;
}

/** Events already recorded per cluster uid, so a step that waits does not record the same Event every pass. */
const RECENT_EVENT_MS = 10 * 60_000;

export class Reconciler {
  private readonly recentEvents = new Map<string, number>();
  private readonly now: () => Date;

  private readonly volumes: ClusterVolumes;

  constructor(private readonly deps: ReconcilerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.volumes = new ClusterVolumes({
      kube: deps.kube,
      event: (cluster, event) => this.event({ cluster }, event),
    });
  }

  /** The steps, in order. */
  readonly steps: Step[] = [
    { name: 'volumes', run: (ctx) => this.volumesStep(ctx) },
    { name: 'validate-spec', run: (ctx) => this.validateSpec(ctx) },
    { name: 'observe', run: (ctx) => this.observe(ctx) },
    { name: 'ensure-services', run: (ctx) => this.ensureServices(ctx) },
    { name: 'ensure-disruption-budget', run: (ctx) => this.ensureDisruptionBudget(ctx) },
    { name: 'ensure-context-secret', run: (ctx) => this.ensureContextSecret(ctx) },
    { name: 'ensure-auth-secret', run: (ctx) => this.ensureAuthSecret(ctx) },
    { name: 'plan-scaling', run: (ctx) => this.planScaling(ctx) },
    { name: 'ensure-certificates', run: (ctx) => this.ensureCertificates(ctx) },
    { name: 'ensure-tokens', run: (ctx) => this.ensureTokens(ctx) },
    { name: 'ensure-statefulset', run: (ctx) => this.ensureStatefulSet(ctx) },
    { name: 'scale-down', run: (ctx) => this.scaleDown(ctx) },
    { name: 'await-scale-up', run: (ctx) => this.awaitScaleUp(ctx) },
  ];

  /** Reconciles namespace/name; returns when to look again (undefined: only on the next change or resync). */
  async reconcile(namespace: string, name: string): Promise<StepResult> {
    const cluster = await this.deps.kube.getCluster(namespace, name);
    if (cluster === undefined) return { kind: 'done', reason: 'cluster deleted' };
    if (cluster.metadata.deletionTimestamp) {
      const policy = withDefaults(cluster.spec).storage.volumesOnDelete;
      const wait = await this.volumes.finalize(cluster, policy);
      return wait ? requeue(wait.waitMs, wait.reason) : { kind: 'done', reason: 'cluster being deleted' };
    }
    const log = this.deps.log.child({
      cluster: `${namespace}/${name}`,
      generation: cluster.metadata.generation,
    });
    const ctx: ReconcileContext = {
      cluster,
      spec: withDefaults(cluster.spec),
      problems: [],
      tokens: new Map(),
      pods: [],
      decommissioning: cluster.status?.decommissioning ?? null,
      access: {},
    };
    let result: StepResult = { kind: 'done', reason: 'all steps done' };
    let failure: unknown;
    try {
      for (const step of this.steps) {
        const stepResult = await step.run(ctx);
        if (stepResult.kind !== 'continue') {
          log.debug({ step: step.name, result: stepResult }, 'reconcile stopped at step');
          result = stepResult;
          break;
        }
      }
      if (result.kind === 'done' && ctx.followUpMs !== undefined)
        result = requeue(ctx.followUpMs, 'certificates left for the next pass');
    } catch (err) {
      failure = err;
    }
    // The status always reflects this pass, even one a step cut short or an error ended.
    await this.writeStatus(ctx, log);
    if (failure !== undefined) throw failure;
    return result;
  }

  // --- steps -------------------------------------------------------------------------------------------------

  /**
   * With volumesOnDelete: Delete, the finalizer is on the cluster before anything else is made; a new cluster
   * that finds claims of an earlier one of its name says so (volumes.ts).
   */
  private async volumesStep(ctx: ReconcileContext): Promise<StepResult> {
    ctx.cluster = await this.volumes.ensureFinalizer(ctx.cluster, ctx.spec.storage.volumesOnDelete);
    if (ctx.cluster.status?.observedGeneration === undefined) await this.volumes.reportLeftovers(ctx.cluster);
    return CONTINUE;
  }

  private async validateSpec(ctx: ReconcileContext): Promise<StepResult> {
    ctx.problems = validateSpec(ctx.spec);
    if (ctx.problems.length === 0) return CONTINUE;
    await this.event(ctx, { type: 'Warning', reason: 'InvalidSpec', message: ctx.problems.join('; ') });
    // Observe anyway, so the status still counts the nodes that run.
    await this.observe(ctx);
    return { kind: 'done', reason: 'invalid spec' };
  }

  private async observe(ctx: ReconcileContext): Promise<StepResult> {
    const { namespace, name } = ctx.cluster.metadata;
    const [statefulSet, tokenConfigMap, pods, tlsSecret, authSecret] = await Promise.all([
      this.deps.kube.read<V1StatefulSet>(ref('apps/v1', 'StatefulSet', namespace, statefulSetName(name))),
      this.deps.kube.read<V1ConfigMap>(ref('v1', 'ConfigMap', namespace, tokenConfigMapName(name))),
      this.deps.kube.listPods(namespace, `${LABEL_CLUSTER}=${name}`),
      this.deps.kube.read<V1Secret>(ref('v1', 'Secret', namespace, tlsSecretName(name))),
      this.deps.kube.read<V1Secret>(ref('v1', 'Secret', namespace, authSecretName(name))),
    ]);
    ctx.statefulSet = statefulSet;
    ctx.tokenConfigMap = tokenConfigMap;
    ctx.tokens = parseAssignments(tokenConfigMap?.data);
    ctx.pods = podViews(name, pods);
    ctx.nodeFailures = nodeFailures(name, pods);
    for (const failure of ctx.nodeFailures) await this.event(ctx, failureEvent(failure));
    ctx.tlsSecret = tlsSecret;
    ctx.access = { ca: secretFiles(tlsSecret)[CA_CERT_KEY], token: operatorToken(authSecret) };
    this.keepTlsMode(ctx);
    ctx.ringStates = await this.ringStates(ctx);
    return CONTINUE;
  }

  /**
   * A running cluster keeps the TLS mode it was created with: nodes with and without TLS (or with certificates
   * of different CAs) cannot talk to each other, so the rolling restart a change needs would split the ring
   * until its end. The mode in effect is the StatefulSet's annotation (none: made before TLS existed, plain).
   */
  private keepTlsMode(ctx: ReconcileContext): void {
    if (ctx.statefulSet === undefined) return;
    const recorded = ctx.statefulSet.metadata?.annotations?.[TLS_MODE_ANNOTATION];
    const running: TlsMode =
      recorded === 'operator' || recorded === 'cert-manager' || recorded === 'disabled'
        ? recorded
        : 'disabled';
    if (running === ctx.spec.tls.mode) return;
    ctx.requestedTlsMode = ctx.spec.tls.mode;
    ctx.spec = { ...ctx.spec, tls: { ...ctx.spec.tls, mode: running } };
  }

  private async ensureServices(ctx: ReconcileContext): Promise<StepResult> {
    await this.applyOwned(ctx, buildPeerService(ctx.cluster));
    await this.applyOwned(ctx, buildClientService(ctx.cluster));
    return CONTINUE;
  }

  private async ensureDisruptionBudget(ctx: ReconcileContext): Promise<StepResult> {
    await this.applyOwned(ctx, buildPodDisruptionBudget(ctx.cluster));
    await this.applyOwned(
      ctx,
      buildNetworkPolicy(ctx.cluster, ctx.spec, { operatorNamespace: this.deps.operatorNamespace }),
    );
    return CONTINUE;
  }

  /** Creates the context secret once; an existing one is never replaced (clients' contexts would break). */
  private async ensureContextSecret(ctx: ReconcileContext): Promise<StepResult> {
    const { namespace, name } = ctx.cluster.metadata;
    const existing = await this.deps.kube.read<V1Secret>(
      ref('v1', 'Secret', namespace, contextSecretName(name)),
    );
    if (existing === undefined) await this.applyOwned(ctx, buildContextSecret(ctx.cluster), existing);
    return CONTINUE;
  }

  /** Creates the client tokens Secret once; an existing one is never written again (user edits stay). */
  private async ensureAuthSecret(ctx: ReconcileContext): Promise<StepResult> {
    if (!ctx.spec.auth.enabled) return CONTINUE;
    const { namespace, name } = ctx.cluster.metadata;
    const existing = await this.deps.kube.read<V1Secret>(
      ref('v1', 'Secret', namespace, authSecretName(name)),
    );
    if (existing !== undefined) {
      if (ctx.access.token === undefined) {
        await this.event(ctx, {
          type: 'Warning',
          reason: 'NoOperatorToken',
          message: `${authSecretName(name)} has no operator-token, admin-token or admin line in tokens: the operator cannot call the nodes' admin API`,
        });
      }
      return CONTINUE;
    }
    const created = await this.applyOwned(ctx, buildAuthSecret(ctx.cluster), existing);
    ctx.access = { ...ctx.access, token: operatorToken(created) };
    return CONTINUE;
  }

  /**
   * Certificates for every node the StatefulSet has or is about to have, before it has them: issued by the
   * operator from the cluster CA, or by cert-manager. Renewed in place; the nodes re-read the files.
   */
  private async ensureCertificates(ctx: ReconcileContext): Promise<StepResult> {
    const decision = ctx.decision;
    if (decision === undefined || !tlsOn(ctx.spec)) return CONTINUE;
    const count = Math.max(decision.replicas, ctx.statefulSet?.spec?.replicas ?? 0);
    const ordinals = Array.from({ length: count }, (_, i) => i);
    return ctx.spec.tls.mode === 'cert-manager'
      ? await this.certificatesFromCertManager(ctx, ordinals)
      : await this.issueCertificates(ctx, ordinals);
  }

  private async issueCertificates(ctx: ReconcileContext, ordinals: number[]): Promise<StepResult> {
    const { namespace, name } = ctx.cluster.metadata;
    const caRef = ref('v1', 'Secret', namespace, caSecretName(name));
    let caSecret = await this.deps.kube.read<V1Secret>(caRef);
    if (caSecret === undefined) {
      caSecret = await this.applyOwned(
        ctx,
        buildCaSecret(ctx.cluster, createCa(caCommonName(ctx.cluster), CA_DAYS, this.now())),
        caSecret,
      );
    }
    const ca = caFromSecret(caSecret);
    if (ca === undefined) {
      // Never replaced: nodes and clients trust it. A user who broke it must repair or delete it.
      const message = `${caSecretName(name)} holds no CA certificate and key (tls.crt, tls.key); fix it or delete it for a new CA (every node certificate is then re-issued)`;
      await this.event(ctx, { type: 'Warning', reason: 'InvalidCA', message });
      return requeue(30_000, 'invalid CA Secret');
    }
    const files = secretFiles(ctx.tlsSecret);
    const now = this.now();
    const plan = planNodeCertificates({
      cluster: ctx.cluster,
      files,
      caCert: ca.cert,
      ordinals,
      podOrdinals: ctx.pods.map((p) => p.ordinal),
      now,
    });
    const next: Record<string, string> = { ...files, [CA_CERT_KEY]: ca.cert };
    for (const pod of plan.remove) {
      delete next[certFileKey(pod)];
      delete next[keyFileKey(pod)];
    }
    for (const { ordinal, pod } of plan.issue) {
      const pair = issueCertificate(ca, {
        ...expectedNames(ctx.cluster, ordinal),
        days: NODE_CERTIFICATE_DAYS,
        now,
      });
      next[certFileKey(pod)] = pair.cert;
      next[keyFileKey(pod)] = pair.key;
    }
    if (plan.deferred > 0) ctx.followUpMs = 1_000;
    await this.writeTlsSecret(ctx, next);
    const issued = plan.issue.filter((i) => i.reason === 'missing').map((i) => i.pod);
    const renewed = plan.issue.filter((i) => i.reason !== 'missing');
    if (issued.length > 0) {
      await this.event(ctx, {
        type: 'Normal',
        reason: 'CertificatesIssued',
        message: `issued node certificates for ${issued.join(', ')} (valid ${NODE_CERTIFICATE_DAYS} days)`,
      });
    }
    if (renewed.length > 0) {
      ctx.renewed = renewed.map((r) => r.pod);
      const notAfter = certificateValidity(next[certFileKey(renewed[0]!.pod)]!).notAfter.toISOString();
      await this.event(ctx, {
        type: 'Normal',
        reason: 'CertificateRenewed',
        message: `renewed the certificates of ${renewed.map((r) => `${r.pod} (${r.reason})`).join(', ')}; valid until ${notAfter}`,
      });
    }
    return CONTINUE;
  }

  private async certificatesFromCertManager(ctx: ReconcileContext, ordinals: number[]): Promise<StepResult> {
    const { namespace, name } = ctx.cluster.metadata;
    for (const ordinal of ordinals) {
      try {
        await this.applyOwned(ctx, buildCertManagerCertificate(ctx.cluster, ctx.spec, ordinal));
      } catch (err) {
        const message = `could not apply cert-manager Certificate ${certificateName(name, ordinal)} (is cert-manager installed?): ${apiErrorMessage(err)}`;
        await this.event(ctx, { type: 'Warning', reason: 'CertificateFailed', message });
        return requeue(30_000, 'cert-manager Certificate not applied');
      }
    }
    const pods = ordinals.map((o) => podName(name, o));
    const issued = new Map<string, Record<string, string>>();
    for (const [i, pod] of pods.entries()) {
      const source = await this.deps.kube.read<V1Secret>(
        ref('v1', 'Secret', namespace, certificateName(name, ordinals[i]!)),
      );
      if (source !== undefined) issued.set(pod, secretFiles(source));
    }
    const previous = secretFiles(ctx.tlsSecret);
    const { files, waiting } = filesFromIssued(issued, previous, pods);
    // Certificates of nodes that are gone: drop them once their pod is, with their Certificate.
    const alive = new Set(ctx.pods.map((p) => podName(name, p.ordinal)));
    for (const file of Object.keys(previous)) {
      const pod = /^(.*)\.crt$/.exec(file)?.[1];
      if (pod === undefined || file === CA_CERT_KEY || pods.includes(pod)) continue;
      if (alive.has(pod)) {
        files[certFileKey(pod)] = previous[certFileKey(pod)]!;
        if (previous[keyFileKey(pod)]) files[keyFileKey(pod)] = previous[keyFileKey(pod)]!;
        continue;
      }
      const ordinal = ordinalOf(name, pod);
      if (ordinal !== undefined)
        await this.deps.kube.remove(
          ref(CERT_MANAGER_API_VERSION, 'Certificate', namespace, certificateName(name, ordinal)),
        );
    }
    const renewed = pods.filter(
      (pod) =>
        previous[certFileKey(pod)] !== undefined && previous[certFileKey(pod)] !== files[certFileKey(pod)],
    );
    if (waiting.length === 0 && files[CA_CERT_KEY] === undefined) {
      const message = `the Secrets cert-manager issued have no ca.crt: nodes need the CA to verify each other (use an issuer that sets it, such as a CA issuer)`;
      await this.event(ctx, { type: 'Warning', reason: 'NoCACertificate', message });
      return requeue(30_000, 'no ca.crt from cert-manager');
    }
    if (waiting.length < pods.length && files[CA_CERT_KEY] !== undefined)
      await this.writeTlsSecret(ctx, files);
    if (renewed.length > 0) {
      ctx.renewed = renewed;
      await this.event(ctx, {
        type: 'Normal',
        reason: 'CertificateRenewed',
        message: `cert-manager renewed the certificates of ${renewed.join(', ')}; copied to ${tlsSecretName(name)}`,
      });
    }
    if (waiting.length > 0) return requeue(5_000, `waiting for cert-manager to issue ${waiting.join(', ')}`);
    return CONTINUE;
  }

  /** Writes `<cluster>-tls` when its files change, conditionally on the version read. */
  private async writeTlsSecret(ctx: ReconcileContext, files: Record<string, string>): Promise<void> {
    const before = secretFiles(ctx.tlsSecret);
    const same =
      Object.keys(before).length === Object.keys(files).length &&
      Object.entries(files).every(([k, v]) => before[k] === v);
    if (same && ctx.tlsSecret !== undefined) return;
    const desired = buildNodeTlsSecret(ctx.cluster, files);
    const rv = ctx.tlsSecret?.metadata?.resourceVersion;
    if (rv !== undefined && desired.metadata) desired.metadata.resourceVersion = rv;
    ctx.tlsSecret = await this.applyOwned(ctx, desired, ctx.tlsSecret);
    ctx.access = { ...ctx.access, ca: files[CA_CERT_KEY] };
  }

  private async planScaling(ctx: ReconcileContext): Promise<StepResult> {
    const replicas = ctx.statefulSet?.spec?.replicas;
    const observation = {
      cluster: ctx.cluster.metadata.name,
      desiredNodes: ctx.spec.nodes,
      replicas,
      pods: ctx.pods,
      minNodes: ctx.spec.replication.n,
      decommissioning: ctx.decommissioning,
      ...(ctx.ringStates ? { ringStates: ctx.ringStates } : {}),
    };
    let decision = planScaling(observation);
    if (decision.action === 'begin-decommission') {
      // Only now is the (slower) capacity check worth its requests.
      const capacity = await this.capacity(ctx, decision.replicas - 1);
      decision = planScaling({ ...observation, capacity });
    }
    ctx.decision = decision;
    if (decision.action === 'refuse') {
      await this.event(ctx, { type: 'Warning', reason: 'ScaleDownRefused', message: decision.reason });
    }
    return CONTINUE;
  }

  private async ensureTokens(ctx: ReconcileContext): Promise<StepResult> {
    const decision = ctx.decision;
    if (decision === undefined) return CONTINUE;
    const { name } = ctx.cluster.metadata;
    const existingReplicas = ctx.statefulSet?.spec?.replicas ?? 0;
    if (ctx.tokenConfigMap === undefined && existingReplicas > 0) {
      // The record is gone but nodes run: rebuild it from the ring rather than hand out new tokens.
      const recovered = await this.tokensFromRing(ctx);
      if (recovered === undefined) {
        ctx.decommissionProblem = `the token ConfigMap ${tokenConfigMapName(name)} is missing and no ready node could list the ring's tokens; waiting`;
        await this.event(ctx, { type: 'Warning', reason: 'TokensMissing', message: ctx.decommissionProblem });
        return requeue(15_000, 'token record missing');
      }
      ctx.tokens = recovered;
      await this.writeTokens(ctx, recovered);
      await this.event(ctx, {
        type: 'Warning',
        reason: 'TokensRecovered',
        message: `rebuilt ${tokenConfigMapName(name)} from the ring (${recovered.size} nodes)`,
      });
    }
    const needed = Array.from({ length: decision.replicas }, (_, i) => podName(name, i));
    const missing = needed.filter((node) => !ctx.tokens.has(node));
    // A new cluster (no record, no nodes) is founded by its first node; once any node is ready the
    // cluster exists, and the designation goes so that no pod restarted on an empty volume founds another.
    const newCluster = ctx.tokenConfigMap === undefined && existingReplicas === 0;
    const founder = newCluster ? podName(name, 0) : ctx.tokenConfigMap?.data?.[FOUNDER_KEY];
    const founded = founder !== undefined && ctx.pods.some((p) => p.ready);
    if (missing.length === 0 && ctx.tokenConfigMap !== undefined && !founded) return CONTINUE;
    const assigned = assignTokens(ctx.tokens, missing, ctx.spec.tokensPerNode, ctx.spec.replication.n);
    await this.writeTokens(ctx, assigned, founded ? undefined : founder);
    for (const node of missing) {
      await this.event(ctx, {
        type: 'Normal',
        reason: 'TokensAssigned',
        message: `assigned ${ctx.spec.tokensPerNode} balanced tokens to ${node}`,
      });
    }
    return CONTINUE;
  }

  private async ensureStatefulSet(ctx: ReconcileContext): Promise<StepResult> {
    const decision = ctx.decision;
    if (decision === undefined) return CONTINUE;
    // While a node leaves, the pod template stays as it is: a rolling restart would start with that very node.
    const leaving = ['begin-decommission', 'decommission', 'finish-decommission'].includes(decision.action);
    if (leaving && ctx.statefulSet !== undefined) return CONTINUE;
    const before = ctx.statefulSet;
    if (ctx.requestedTlsMode !== undefined) {
      await this.event(ctx, {
        type: 'Warning',
        reason: 'TLSModeUnchanged',
        message: `spec.tls.mode is ${ctx.requestedTlsMode} but the nodes run with ${ctx.spec.tls.mode}; a running cluster keeps its TLS mode (nodes with and without it cannot talk, so a rolling restart would split the ring)`,
      });
    }
    const desired = keepImmutableFields(buildStatefulSet(ctx.cluster, ctx.spec, decision.replicas), before);
    const claimed = claimedStorage(before);
    if (claimed !== undefined && claimed !== ctx.spec.storage.size) {
      await this.event(ctx, {
        type: 'Warning',
        reason: 'StorageUnchanged',
        message: `spec.storage.size is ${ctx.spec.storage.size} but the nodes' volumes were created with ${claimed}; a StatefulSet cannot change its volume claims`,
      });
    }
    ctx.statefulSet = await this.applyOwned(ctx, desired, before);
    if (decision.action === 'scale-up') {
      await this.event(ctx, {
        type: 'Normal',
        reason: 'ScalingUp',
        message: `adding node ${decision.node} (${decision.replicas} of ${ctx.spec.nodes})`,
      });
    }
    return CONTINUE;
  }

  private async scaleDown(ctx: ReconcileContext): Promise<StepResult> {
    const decision = ctx.decision;
    switch (decision?.action) {
      case 'begin-decommission': {
        const record: DecommissionRecord = {
          node: decision.node,
          ordinal: decision.ordinal,
          startedAt: this.now().toISOString(),
        };
        // The intent is stored (and the stored cluster re-read next pass) before the node is asked anything.
        ctx.cluster = await this.deps.kube.patchClusterStatus(
          ctx.cluster.metadata.namespace,
          ctx.cluster.metadata.name,
          { decommissioning: record },
        );
        ctx.decommissioning = record;
        await this.event(ctx, {
          type: 'Normal',
          reason: 'DecommissionStarted',
          message: `decommissioning ${decision.node}: its data streams to the remaining nodes before it is removed`,
        });
        return requeue(0, 'decommission recorded');
      }
      case 'decommission':
        return await this.decommission(ctx, decision.node, decision.ordinal);
      case 'finish-decommission':
        return await this.finishDecommission(ctx, decision.node, decision.ordinal);
      case 'refuse':
        return { kind: 'done', reason: decision.reason };
      case 'wait':
        return requeue(decision.afterMs, decision.reason);
      default:
        return CONTINUE;
    }
  }

  private async awaitScaleUp(ctx: ReconcileContext): Promise<StepResult> {
    if (ctx.decision?.action === 'scale-up')
      return requeue(5_000, `waiting for ${ctx.decision.node} to join`);
    return CONTINUE;
  }

  // --- scale-down sub-steps ----------------------------------------------------------------------------------

  private async decommission(ctx: ReconcileContext, node: string, ordinal: number): Promise<StepResult> {
    const pod = ctx.pods.find((p) => p.ordinal === ordinal);
    let status: Awaited<ReturnType<NodeAdmin['decommission']>> | undefined;
    let unreachable: string | undefined;
    if (pod !== undefined) {
      try {
        status = await this.deps.nodes.decommission(this.urlOf(ctx, pod), this.accessOf(ctx, ordinal));
      } catch (err) {
        unreachable = err instanceof Error ? err.message : String(err);
      }
    }
    let ringState: string | null | undefined;
    let ringKnown = false;
    if (status === undefined) {
      const peer = await this.peerRing(ctx, ordinal);
      ringKnown = peer !== undefined;
      ringState = peer === undefined ? undefined : (peer.get(node) ?? null);
    }
    const verdict = decideDecommission(node, { status, ringState, ringKnown });
    const started = ctx.decommissioning ?? { node, ordinal, startedAt: this.now().toISOString() };
    ctx.decommissioning = {
      node: started.node,
      ordinal: started.ordinal,
      startedAt: started.startedAt,
      state: status?.state ?? 'unreachable',
      ...(typeof status?.stream?.rangesPending === 'number'
        ? { rangesPending: status.stream.rangesPending }
        : {}),
      ...(verdict.action === 'failed' ? { error: verdict.reason } : {}),
    };

    if (verdict.action === 'wait') {
      this.deps.log.info({ node, reason: verdict.reason, unreachable }, 'decommission in progress');
      return requeue(verdict.afterMs, verdict.reason);
    }
    if (verdict.action === 'failed') {
      ctx.decommissionProblem = verdict.reason;
      await this.event(ctx, { type: 'Warning', reason: 'DecommissionFailed', message: verdict.reason });
      return requeue(verdict.afterMs, verdict.reason);
    }
    // The node has left (or never was a member): only now may the StatefulSet drop it. What the verdict
    // rested on is stored first: finishDecommission deletes the claim only after a handover (a pod that
    // vanishes otherwise, or a member removed by an admin, may have held the last copy of writes and hints).
    ctx.decommissioning = { ...ctx.decommissioning, state: handoverState(status, ringState) };
    ctx.cluster = await this.deps.kube.patchClusterStatus(
      ctx.cluster.metadata.namespace,
      ctx.cluster.metadata.name,
      { decommissioning: ctx.decommissioning },
    );
    const desired = keepImmutableFields(buildStatefulSet(ctx.cluster, ctx.spec, ordinal), ctx.statefulSet);
    await this.deps.kube.apply(desired);
    const stored = await this.deps.kube.read<V1StatefulSet>(
      ref(
        'apps/v1',
        'StatefulSet',
        ctx.cluster.metadata.namespace,
        statefulSetName(ctx.cluster.metadata.name),
      ),
    );
    if (stored?.spec?.replicas !== ordinal) {
      return requeue(2_000, `StatefulSet not yet at ${ordinal} replicas`);
    }
    ctx.statefulSet = stored;
    await this.event(ctx, {
      type: 'Normal',
      reason: 'NodeLeft',
      message: `${verdict.reason}; StatefulSet scaled to ${ordinal} replicas`,
    });
    return requeue(1_000, 'node removed from the StatefulSet');
  }

  private async finishDecommission(
    ctx: ReconcileContext,
    node: string,
    ordinal: number,
  ): Promise<StepResult> {
    const { namespace, name } = ctx.cluster.metadata;
    if (ctx.pods.some((p) => p.ordinal === ordinal)) {
      return requeue(2_000, `waiting for pod ${node} to terminate`);
    }
    const claim = pvcName(name, ordinal);
    const state = ctx.decommissioning?.state;
    const handedOver = HANDED_OVER.has(state ?? '');
    if (ctx.spec.storage.retainOnScaleDown) {
      await this.event(ctx, {
        type: 'Normal',
        reason: 'VolumeRetained',
        message: `kept ${claim} (retainOnScaleDown)`,
      });
    } else if (!handedOver) {
      // The StatefulSet lost the pod without the node having left (scaled by hand, or the member was
      // removed): its volume may hold the only copy of acknowledged writes and of the hints it stood in for.
      await this.event(ctx, {
        type: 'Warning',
        reason: 'VolumeKept',
        message: `kept ${claim}: ${node} left the StatefulSet without reporting that its data had moved (last state: ${state ?? 'unknown'}), so its volume may hold the only copy of writes; scale up to let it rejoin with its data, or delete the claim once you know it holds nothing`,
      });
    } else if (await this.deps.kube.remove(ref('v1', 'PersistentVolumeClaim', namespace, claim))) {
      await this.event(ctx, { type: 'Normal', reason: 'VolumeDeleted', message: `deleted ${claim}` });
    }
    // Its tokens go only with its data. A node that did not hand over is still where the ring has it: scaled
    // up again it comes back on its volume, which holds these tokens (any others it refuses: token_mismatch).
    if (handedOver && ctx.tokens.has(node)) {
      const remaining = new Map(ctx.tokens);
      remaining.delete(node);
      await this.writeTokens(ctx, remaining);
    }
    ctx.cluster = await this.deps.kube.patchClusterStatus(namespace, name, { decommissioning: null });
    ctx.decommissioning = null;
    await this.event(ctx, {
      type: 'Normal',
      reason: 'Decommissioned',
      message: `${node} decommissioned and removed`,
    });
    return requeue(1_000, 'next scaling step');
  }

  // --- helpers -----------------------------------------------------------------------------------------------

  /** Server-side applies an owned object; records an Event when it was created or changed. */
  private async applyOwned<T extends KubernetesObject>(
    ctx: ReconcileContext,
    object: T,
    known?: T,
  ): Promise<T> {
    const { kind } = object;
    const objectName = object.metadata?.name ?? '';
    const before =
      known ??
      (await this.deps.kube.read<T>(
        ref(object.apiVersion ?? '', kind ?? '', ctx.cluster.metadata.namespace, objectName),
      ));
    const after = await this.deps.kube.apply(object);
    // Objects with a generation are compared by it: their status (written by other controllers) moves
    // resourceVersion without any change of ours.
    const generation = after.metadata?.generation;
    const changed =
      before === undefined ||
      (generation !== undefined
        ? before.metadata?.generation !== generation
        : before.metadata?.resourceVersion !== after.metadata?.resourceVersion);
    if (changed) {
      await this.event(ctx, {
        type: 'Normal',
        reason: before === undefined ? 'Created' : 'Updated',
        message: `${before === undefined ? 'created' : 'updated'} ${kind} ${objectName}`,
      });
    }
    return after;
  }

  /** Writes the token ConfigMap and reads it back: pods must never start before their tokens are stored. */
  /** Writes the token record; founder is kept only while given (see ensureTokens). */
  private async writeTokens(
    ctx: ReconcileContext,
    assignments: TokenAssignments,
    founder?: string,
  ): Promise<void> {
    const desired = buildTokenConfigMap(ctx.cluster, assignments, founder);
    const rv = ctx.tokenConfigMap?.metadata?.resourceVersion;
    // resourceVersion makes the apply conditional: a concurrent writer fails it instead of being overwritten.
    if (rv !== undefined && desired.metadata) desired.metadata.resourceVersion = rv;
    await this.applyOwned(ctx, desired, ctx.tokenConfigMap);
    const stored = await this.deps.kube.read<V1ConfigMap>(
      ref('v1', 'ConfigMap', ctx.cluster.metadata.namespace, tokenConfigMapName(ctx.cluster.metadata.name)),
    );
    const storedTokens = parseAssignments(stored?.data);
    for (const [node, tokens] of assignments) {
      if (storedTokens.get(node)?.join(',') !== tokens.join(',')) {
        throw new Error(`token ConfigMap does not hold the tokens just written for ${node}`);
      }
    }
    ctx.tokenConfigMap = stored;
    ctx.tokens = storedTokens;
  }

  private async writeStatus(ctx: ReconcileContext, log: Logger): Promise<void> {
    const replicas = ctx.statefulSet?.spec?.replicas ?? 0;
    const status = buildStatus({
      cluster: ctx.cluster.metadata.name,
      generation: ctx.cluster.metadata.generation ?? 0,
      desiredNodes: ctx.spec.nodes,
      problems: ctx.problems,
      decision: ctx.decision,
      decommissionProblem: ctx.decommissionProblem,
      decommissioning: ctx.decommissioning,
      replicas,
      pods: ctx.pods,
      nodeFailures: ctx.nodeFailures,
      tokens: ctx.tokens,
      ringStates: ctx.ringStates,
      previous: ctx.cluster.status,
      now: this.now(),
    });
    // An unknown mode (a CRD older than this operator let it through) has no place in the status schema.
    if ((TLS_MODES as readonly string[]).includes(ctx.spec.tls.mode)) status.tls = this.tlsStatus(ctx);
    if (sameStatus(ctx.cluster.status, status)) return;
    const previousPhase = ctx.cluster.status?.phase;
    try {
      ctx.cluster = await this.deps.kube.patchClusterStatus(
        ctx.cluster.metadata.namespace,
        ctx.cluster.metadata.name,
        status,
      );
    } catch (err) {
      log.warn({ err: apiErrorMessage(err) }, 'status update failed');
      throw err;
    }

    log.info(
      { phase: status.phase, readyNodes: status.readyNodes, nodes: status.nodes, previousPhase },
      'status',
    );
  }

  /** What the status says about certificates: the mode in effect, expiries, the last renewal. */
  private tlsStatus(ctx: ReconcileContext): TlsStatus {
    const mode = ctx.spec.tls.mode;
    if (mode === 'disabled') return { mode };
    const files = secretFiles(ctx.tlsSecret);
    const replicas = ctx.statefulSet?.spec?.replicas ?? 0;
    const pods = Array.from({ length: replicas }, (_, i) => podName(ctx.cluster.metadata.name, i));
    let caNotAfter: string | undefined;
    try {
      if (files[CA_CERT_KEY]) caNotAfter = certificateValidity(files[CA_CERT_KEY]).notAfter.toISOString();
    } catch {
      // unreadable: not reported
    }
    const certificatesNotAfter = earliestExpiry(files, pods);
    const lastRenewal =
      ctx.renewed !== undefined && ctx.renewed.length > 0
        ? { at: this.now().toISOString(), nodes: ctx.renewed }
        : ctx.cluster.status?.tls?.lastRenewal;
    return {
      mode,
      ...(caNotAfter ? { caNotAfter } : {}),
      ...(certificatesNotAfter ? { certificatesNotAfter } : {}),
      ...(lastRenewal ? { lastRenewal } : {}),
    };
  }

  /** Records an Event unless the same one was recorded for this cluster in the last RECENT_EVENT_MS. */
  private async event(ctx: Pick<ReconcileContext, 'cluster'>, event: EventRecord): Promise<void> {
    const key = `${ctx.cluster.metadata.uid}|${event.reason}|${event.message}`;
    const now = this.now().getTime();
    const last = this.recentEvents.get(key);
    if (last !== undefined && now - last < RECENT_EVENT_MS) return;
    this.recentEvents.set(key, now);
    if (this.recentEvents.size > 10_000) {
      for (const [k, t] of this.recentEvents) if (now - t >= RECENT_EVENT_MS) this.recentEvents.delete(k);
    }
    this.deps.log.info(
      {
        cluster: `${ctx.cluster.metadata.namespace}/${ctx.cluster.metadata.name}`,
        event: event.reason,
        type: event.type,
      },
      event.message,
    );
    try {
      await this.deps.kube.recordEvent(ctx.cluster, event);
    } catch (err) {
      // An Event is a courtesy: failing to record one must not stop the reconcile.
      this.deps.log.warn({ err: apiErrorMessage(err), event: event.reason }, 'could not record event');
    }
  }

  private urlOf(ctx: ReconcileContext, pod: PodView): string {
    return this.deps.nodeUrl(ctx.cluster, pod.ordinal, pod.podIP, tlsOn(ctx.spec) ? 'https' : 'http');
  }

  /** The CA, server name and token for a node's admin API (TLS: the certificate must name the pod's DNS name). */
  private accessOf(ctx: ReconcileContext, ordinal: number): NodeAccess {
    return {
      ...(tlsOn(ctx.spec) && ctx.access.ca
        ? { ca: ctx.access.ca, serverName: podHost(ctx.cluster, ordinal) }
        : {}),
      ...(ctx.access.token ? { token: ctx.access.token } : {}),
    };
  }

  /** Ring states by node from the first ready node that answers (best effort, for status). */
  private async ringStates(ctx: ReconcileContext): Promise<Map<string, string> | undefined> {
    return await this.peerRing(ctx, -1);
  }

  /** A ready node's ring view (node -> state), skipping `except`; undefined when none answers. */
  private async peerRing(ctx: ReconcileContext, except: number): Promise<Map<string, string> | undefined> {
    for (const pod of ctx.pods) {
      if (!pod.ready || pod.ordinal === except) continue;
      try {
        const view = await this.deps.nodes.ring(this.urlOf(ctx, pod), false, this.accessOf(ctx, pod.ordinal));
        return new Map(view.members.map((m) => [m.id, m.state]));
      } catch {
        // try the next node
      }
    }
    return undefined;
  }

  private async tokensFromRing(ctx: ReconcileContext): Promise<TokenAssignments | undefined> {
    for (const pod of ctx.pods) {
      if (!pod.ready) continue;
      try {
        const view = await this.deps.nodes.ring(this.urlOf(ctx, pod), true, this.accessOf(ctx, pod.ordinal));
        const out: TokenAssignments = new Map();
        for (const m of view.members) {
          if (m.state === 'removed' || !Array.isArray(m.tokens) || m.tokens.length === 0) continue;
          if (ordinalOf(ctx.cluster.metadata.name, m.id) !== undefined) out.set(m.id, m.tokens);
        }
        if (out.size > 0) return out;
      } catch {
        // try the next node
      }
    }
    return undefined;
  }

  private async capacity(ctx: ReconcileContext, remaining: number) {
    const volume = parseQuantity(claimedStorage(ctx.statefulSet) ?? ctx.spec.storage.size);
    const bytes = await Promise.all(
      ctx.pods
        .filter((p) => p.ordinal < (ctx.statefulSet?.spec?.replicas ?? 0))
        .map((p) =>
          this.deps.nodes
            .storageBytes(this.urlOf(ctx, p), this.accessOf(ctx, p.ordinal))
            .catch(() => undefined),
        ),
    );
    return checkCapacity(bytes, remaining, volume);
  }
}

/** Decommission record states after which a node's volume holds nothing the cluster needs. */
const HANDED_OVER = new Set(['left', 'not-a-member']);

/** The record's state once a shrink is decided: `left`, `not-a-member`, or the ring state (e.g. `removed`). */
function handoverState(status: { state: string } | undefined, ringState: string | null | undefined): string {
  if (status?.state === 'left') return 'left';
  if (status === undefined && (ringState === null || ringState === undefined)) return 'not-a-member';
  return status?.state ?? ringState ?? 'unknown';
}

function ref(apiVersion: string, kind: string, namespace: string, name: string): ObjectRef {
  return { apiVersion, kind, namespace, name };
}

/** The cluster's pods by ordinal; a pod being deleted counts as not ready. */
export function podViews(cluster: string, pods: readonly V1Pod[]): PodView[] {
  const out: PodView[] = [];
  for (const pod of pods) {
    const ordinal = ordinalOf(cluster, pod.metadata?.name ?? '');
    if (ordinal === undefined) continue;
    const ready =
      !pod.metadata?.deletionTimestamp &&
      (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
    out.push({ ordinal, ready, ...(pod.status?.podIP ? { podIP: pod.status.podIP } : {}) });
  }
  return out.sort((a, b) => a.ordinal - b.ordinal);
}

/** Whether writing `next` would change the stored status. */
export function sameStatus(previous: DynamoClusterStatus | undefined, next: DynamoClusterStatus): boolean {
  if (previous === undefined) return false;
  const normal = (s: DynamoClusterStatus) =>
    canonicalJson({ ...s, decommissioning: s.decommissioning ?? null });
  return normal(previous) === normal(next);
}

/** JSON with object keys sorted (the API server returns custom resources with sorted keys). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
