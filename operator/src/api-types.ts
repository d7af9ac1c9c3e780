// The DynamoCluster resource as TypeScript types: what users write in spec, what the operator reports in status.
// crds/dynamokv.io_dynamoclusters.yaml is the schema the API server enforces; keep the two in step.

import type { V1ObjectMeta } from '@kubernetes/client-node';

export const GROUP = 'dynamokv.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'DynamoCluster';
export const PLURAL = 'dynamoclusters';
/** Field manager of every server-side apply and status patch the operator makes. */
export const FIELD_MANAGER = 'dynamo-operator';

/** Client and admin HTTP port of a node. */
export const HTTP_PORT = 8080;
/** Node-to-node port. */
export const PEER_PORT = 7070;
/** Where a node keeps its LevelDB; the PersistentVolumeClaim is mounted here. */
export const DATA_DIR = '/var/lib/dynamo';

export interface Replication {
  n: number;
  r: number;
  w: number;
}

export interface Storage {
  /** A Kubernetes quantity, e.g. "10Gi". */
  size: string;
  storageClassName?: string;
  /** Keep a decommissioned node's PersistentVolumeClaim instead of deleting it. */
  retainOnScaleDown: boolean;
  /** What deleting the cluster does to its nodes' claims (deletion.ts). */
  volumesOnDelete: VolumesOnDelete;
}

/** Retain: deleting the cluster keeps its nodes' claims. Delete: the operator deletes them once the nodes are gone. */
export type VolumesOnDelete = 'Retain' | 'Delete';

export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
}

export interface PodTemplateOverrides {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  nodeSelector?: Record<string, string>;
  tolerations?: Toleration[];
  priorityClassName?: string;
}

/**
 * Who issues the nodes' certificates: the operator itself from a CA of its own (`operator`), cert-manager from
 * the issuer the user names (`cert-manager`), or nobody (`disabled`: plain TCP between nodes, plain HTTP).
 */
export type TlsMode = 'operator' | 'cert-manager' | 'disabled';

/** A cert-manager Issuer or ClusterIssuer. */
export interface IssuerRef {
  name: string;
  kind?: 'Issuer' | 'ClusterIssuer';
  group?: string;
}

export interface TlsSpec {
  mode: TlsMode;
  /** cert-manager mode: the issuer of the nodes' Certificates. */
  issuerRef?: IssuerRef;
}

export interface AuthSpec {
  /** Client tokens with roles on the HTTP API, from the `<cluster>-auth` Secret the operator generates. */
  enabled: boolean;
}

/** A Kubernetes label selector (as in a NetworkPolicy peer): every matchLabels pair and every expression must hold. */
export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  /** Non-empty for In and NotIn, empty or absent for Exists and DoesNotExist. */
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** Addresses outside the pod network (or pods by IP): a CIDR, less the CIDRs in except. */
export interface IpBlock {
  cidr: string;
  except?: string[];
}

/**
 * Who may connect, as a Kubernetes NetworkPolicyPeer: pods matching podSelector in the namespaces matching
 * namespaceSelector (podSelector alone: in the cluster's own namespace; namespaceSelector alone: every pod
 * of those namespaces), or an ipBlock (never combined with a selector).
 */
export interface NetworkPeer {
  namespaceSelector?: LabelSelector;
  podSelector?: LabelSelector;
  ipBlock?: IpBlock;
}

export interface NetworkSpec {
  /**
   * Who may reach the nodes' HTTP port (clients, Prometheus), besides the cluster's own pods and the operator.
   * Unset: anyone who can route to the pods. An empty list: only the cluster's pods and the operator.
   */
  clientFrom?: NetworkPeer[];
}

export interface ResourceRequirements {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

/** The spec as users write it: everything but nothing is optional (the API server fills schema defaults). */
export interface DynamoClusterSpecInput {
  nodes?: number;
  image?: string;
  imagePullPolicy?: string;
  tokensPerNode?: number;
  replication?: Partial<Replication>;
  seeds?: number;
  storage?: Partial<Storage>;
  resources?: ResourceRequirements;
  /** Node label whose value is a node's rack (zone); pods spread across its values and report it as DYNAMO_RACK. */
  rackTopologyKey?: string;
  hintedHandoff?: { windowSeconds?: number };
  antiEntropy?: { intervalSeconds?: number };
  podTemplate?: PodTemplateOverrides;
  tls?: Partial<TlsSpec>;
  auth?: Partial<AuthSpec>;
  network?: NetworkSpec;
}

/** The spec with every default filled in: what the builders and steps work from. */
export interface DynamoClusterSpec {
  nodes: number;
  image: string;
  imagePullPolicy: string;
  tokensPerNode: number;
  replication: Replication;
  seeds: number;
  storage: Storage;
  resources: ResourceRequirements;
  rackTopologyKey: string;
  hintedHandoff: { windowSeconds: number };
  antiEntropy: { intervalSeconds: number };
  podTemplate: PodTemplateOverrides;
  tls: TlsSpec;
  auth: AuthSpec;
  network: NetworkSpec;
}

export type ConditionType = 'Ready' | 'Scaling' | 'Decommissioning' | 'Degraded' | 'Valid';

export interface Condition {
  type: ConditionType;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export type Phase = 'Pending' | 'Creating' | 'Ready' | 'Scaling' | 'Decommissioning' | 'Degraded' | 'Invalid';

export interface MemberStatus {
  name: string;
  tokens: number;
  /** Ready, NotReady, Missing (no pod yet), Leaving (being decommissioned), or the ring state when known. */
  state: string;
}

/** The scale-down the operator has committed to: recorded before the node is asked to leave. */
export interface DecommissionRecord {
  node: string;
  ordinal: number;
  startedAt: string;
  /** Last progress the node reported, for `kubectl describe`. */
  state?: string;
  rangesPending?: number;
  error?: string;
}

/** The certificates the nodes run with, for `kubectl get dyn -o yaml`. */
export interface TlsStatus {
  /** The mode the nodes run with (it can differ from spec.tls.mode, which never changes a running cluster). */
  mode: TlsMode;
  /** When the cluster CA's certificate expires. */
  caNotAfter?: string;
  /** When the first node certificate expires (they are renewed well before). */
  certificatesNotAfter?: string;
  /** When node certificates were last renewed, and which. */
  lastRenewal?: { at: string; nodes: string[] };
}

export interface DynamoClusterStatus {
  phase?: Phase;
  nodes?: number;
  readyNodes?: number;
  members?: MemberStatus[];
  conditions?: Condition[];
  observedGeneration?: number;
  decommissioning?: DecommissionRecord | null;
  tls?: TlsStatus;
}

/** Object metadata with the fields a stored object always has. */
export type ObjectMeta = V1ObjectMeta & { name: string; namespace: string; uid: string };

export interface DynamoCluster {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: DynamoClusterSpecInput;
  status?: DynamoClusterStatus;
}
