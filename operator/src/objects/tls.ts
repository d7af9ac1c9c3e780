// The cluster's certificates as Kubernetes objects, and the pure decisions about them.
//
// - `<cluster>-ca` (kubernetes.io/tls: tls.crt, tls.key): the cluster CA, made once by the operator (operator
//   mode) and never replaced by it: every node certificate, and every client that trusts ca.crt, depend on it.
// - `<cluster>-tls`: every node's certificate and key as `<pod>.crt` and `<pod>.key`, and `ca.crt`. One Secret
//   for all nodes, not one per node, because a StatefulSet gives all its pods one template: a single Secret
//   volume mounted at /etc/dynamo/tls gives each pod its own files at a stable path
//   (/etc/dynamo/tls/$(DYNAMO_NODE_ID).crt) and stays the same when nodes are added, whereas a volume per node's
//   Secret would change the template (restarting every pod) on each scale. The cost: each pod can read every
//   node's key (docs/operator.md lists it among the limitations), and a Secret's 1 MiB caps the nodes
//   (MAX_TLS_NODES).
// - cert-manager mode: a cert-manager Certificate per node (`<pod>-tls`, written by cert-manager to a Secret of
//   the same name), whose files the operator copies into `<cluster>-tls`, so the pods see the same layout.
import { X509Certificate } from 'node:crypto';
import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import {
  certificateValidity,
  issuedBy,
  type KeyPair,
  needsRenewal,
} from '../../../node/src/pki/certificates.js';
import type { DynamoCluster, DynamoClusterSpec } from '../api-types.js';
import {
  caSecretName,
  certificateName,
  commonLabels,
  NODE_CERTIFICATE_IPS,
  nodeDnsNames,
  podName,
  tlsSecretName,
} from '../names.js';
import { ownedMeta } from './meta.js';

/** Lifetime of the cluster CA (it is not rotated automatically). */
export const CA_DAYS = 3650;
/** Lifetime of a node certificate. */
export const NODE_CERTIFICATE_DAYS = 90;
/** A node certificate is renewed once this much of its lifetime has passed (60 of 90 days, as cert-manager). */
export const RENEW_FRACTION = 2 / 3;
/**
 * Most certificates issued in one reconcile: an RSA key takes ~170 ms of the operator's only thread, and a pass
 * that held it for long would miss its leader-election renewals. The rest follow in the next passes.
 */
export const MAX_ISSUED_PER_PASS = 8;

export const CA_CERT_KEY = 'ca.crt';
export const TLS_CERT_KEY = 'tls.crt';
export const TLS_KEY_KEY = 'tls.key';
export const certFileKey = (pod: string): string => `${pod}.crt`;
export const keyFileKey = (pod: string): string => `${pod}.key`;

const b64 = (text: string): string => Buffer.from(text).toString('base64');

/** Decoded data of a Secret. */
export function secretFiles(secret: V1Secret | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secret?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
}

/** The CA's subject common name. */
export function caCommonName(cluster: DynamoCluster): string {
  return `dynamo-kv ${cluster.metadata.namespace}/${cluster.metadata.name} CA`;
}

/** The cluster CA Secret (created once). */
export function buildCaSecret(cluster: DynamoCluster, ca: KeyPair): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: ownedMeta(cluster, caSecretName(cluster.metadata.name)),
    type: 'kubernetes.io/tls',
    data: { [TLS_CERT_KEY]: b64(ca.cert), [TLS_KEY_KEY]: b64(ca.key) },
  };
}

/** The CA key pair in a CA Secret, or undefined when it holds none. */
export function caFromSecret(secret: V1Secret | undefined): KeyPair | undefined {
  const files = secretFiles(secret);
  const cert = files[TLS_CERT_KEY];
  const key = files[TLS_KEY_KEY];
  if (!cert || !key) return undefined;
  try {
    const x = new X509Certificate(cert);
    if (!x.ca) return undefined;
  } catch {
    return undefined;
  }
  return { cert, key };
}

/** The node certificate Secret with the given files (pod files and ca.crt). */
export function buildNodeTlsSecret(cluster: DynamoCluster, files: Record<string, string>): V1Secret {
  const sorted = Object.keys(files).sort();
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: ownedMeta(cluster, tlsSecretName(cluster.metadata.name)),
    type: 'Opaque',
    data: Object.fromEntries(sorted.map((k) => [k, b64(files[k]!)])),
  };
}

/** What a node certificate must name. */
export interface CertificateNames {
  commonName: string;
  dnsNames: string[];
  ips: string[];
}

export function expectedNames(cluster: DynamoCluster, ordinal: number): CertificateNames {
  return {
    commonName: podName(cluster.metadata.name, ordinal),
    dnsNames: nodeDnsNames(cluster, ordinal),
    ips: NODE_CERTIFICATE_IPS,
  };
}

/** The common name and subject alternative names of a PEM certificate; undefined when it does not parse. */
export function certificateNames(pem: string): CertificateNames | undefined {
  try {
    const x = new X509Certificate(pem);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1] ?? '';
    const dnsNames: string[] = [];
    const ips: string[] = [];
    for (const entry of (x.subjectAltName ?? '').split(/,\s*/)) {
      if (entry.startsWith('DNS:')) dnsNames.push(entry.slice(4));
      else if (entry.startsWith('IP Address:')) ips.push(entry.slice(11));
    }
    return { commonName: cn, dnsNames, ips };
  } catch {
    return undefined;
  }
}

const sameSet = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

export type IssueReason = 'missing' | 'expiring' | 'names' | 'issuer' | 'unreadable';

export interface CertificatePlan {
  /** Certificates to issue now, missing ones (pods wait for them) first. */
  issue: Array<{ ordinal: number; pod: string; reason: IssueReason }>;
  /** Certificates that should be issued but wait for a later pass (MAX_ISSUED_PER_PASS). */
  deferred: number;
  /** Pods whose files are no longer needed (their node is gone). */
  remove: string[];
}

export interface PlanInput {
  cluster: DynamoCluster;
  /** The current `<cluster>-tls` files. */
  files: Record<string, string>;
  caCert: string;
  /** Ordinals that need a certificate: every node the StatefulSet has or is about to have. */
  ordinals: number[];
  /** Ordinals whose pods still exist (a terminating pod keeps its files). */
  podOrdinals: number[];
  now: Date;
  limit?: number;
  fraction?: number;
}

/**
 * Which node certificates to issue and which files to drop. A certificate is issued when it is missing, does
 * not parse, was not issued by the CA, names the wrong node or names (a cluster renamed nothing, but a newer
 * operator may add names), or has used RENEW_FRACTION of its lifetime. Pure.
 */
export function planNodeCertificates(input: PlanInput): CertificatePlan {
  const { cluster, files } = input;
  const name = cluster.metadata.name;
  const missing: CertificatePlan['issue'] = [];
  const stale: Array<CertificatePlan['issue'][number] & { notAfter: number }> = [];
  for (const ordinal of input.ordinals) {
    const pod = podName(name, ordinal);
    const cert = files[certFileKey(pod)];
    const key = files[keyFileKey(pod)];
    if (!cert || !key) {
      missing.push({ ordinal, pod, reason: 'missing' });
      continue;
    }
    const names = certificateNames(cert);
    let reason: IssueReason | undefined;
    if (names === undefined) reason = 'unreadable';
    else if (!issuedBy(cert, input.caCert)) reason = 'issuer';
    else {
      const want = expectedNames(cluster, ordinal);
      if (
        names.commonName !== want.commonName ||
        !sameSet(names.dnsNames, want.dnsNames) ||
        !sameSet(names.ips, want.ips)
      )
        reason = 'names';
      else if (needsRenewal(cert, input.now, input.fraction ?? RENEW_FRACTION)) reason = 'expiring';
    }
    if (reason !== undefined) {
      let notAfter = 0;
      try {
        notAfter = certificateValidity(cert).notAfter.getTime();
      } catch {
        // unreadable: renewed first
      }
      stale.push({ ordinal, pod, reason, notAfter });
    }
  }
  stale.sort((a, b) => a.notAfter - b.notAfter || a.ordinal - b.ordinal);
  const room = Math.max(0, (input.limit ?? MAX_ISSUED_PER_PASS) - missing.length);
  const issue = [
    ...missing,
    ...stale.slice(0, room).map(({ ordinal, pod, reason }) => ({ ordinal, pod, reason })),
  ];
  const keep = new Set([...input.ordinals, ...input.podOrdinals].map((o) => podName(name, o)));
  const remove = new Set<string>();
  for (const file of Object.keys(files)) {
    const match = /^(.*)\.(crt|key)$/.exec(file);
    if (match === null || file === CA_CERT_KEY) continue;
    if (!keep.has(match[1]!)) remove.add(match[1]!);
  }
  return { issue, deferred: stale.length - (issue.length - missing.length), remove: [...remove].sort() };
}

/** The earliest expiry of the given pods' certificates (ISO time), or undefined when none parses. */
export function earliestExpiry(files: Record<string, string>, pods: string[]): string | undefined {
  let earliest: Date | undefined;
  for (const pod of pods) {
    const cert = files[certFileKey(pod)];
    if (!cert) continue;
    try {
      const { notAfter } = certificateValidity(cert);
      if (earliest === undefined || notAfter < earliest) earliest = notAfter;
    } catch {
      // skip
    }
  }
  return earliest?.toISOString();
}

// --- cert-manager mode -----------------------------------------------------------------------------------------

export const CERT_MANAGER_API_VERSION = 'cert-manager.io/v1';

/** A cert-manager Certificate object (only the fields the operator sets). */
export interface CertManagerCertificate extends KubernetesObject {
  spec: {
    secretName: string;
    commonName: string;
    dnsNames: string[];
    ipAddresses: string[];
    duration: string;
    renewBefore: string;
    privateKey: { algorithm: 'RSA'; size: number; encoding: 'PKCS8'; rotationPolicy: 'Always' };
    usages: string[];
    issuerRef: { name: string; kind: string; group: string };
    secretTemplate: { labels: Record<string, string> };
  };
}

/** The Certificate cert-manager issues node `ordinal`'s certificate from (same lifetimes as operator mode). */
export function buildCertManagerCertificate(
  cluster: DynamoCluster,
  spec: DynamoClusterSpec,
  ordinal: number,
): CertManagerCertificate {
  const issuer = spec.tls.issuerRef;
  if (!issuer?.name) throw new Error('cert-manager mode needs spec.tls.issuerRef.name');
  const names = expectedNames(cluster, ordinal);
  const hours = (days: number) => `${Math.round(days * 24)}h`;
  return {
    apiVersion: CERT_MANAGER_API_VERSION,
    kind: 'Certificate',
    metadata: ownedMeta(cluster, certificateName(cluster.metadata.name, ordinal)),
    spec: {
      secretName: certificateName(cluster.metadata.name, ordinal),
      commonName: names.commonName,
      dnsNames: names.dnsNames,
      ipAddresses: names.ips,
      duration: hours(NODE_CERTIFICATE_DAYS),
      renewBefore: hours(NODE_CERTIFICATE_DAYS * (1 - RENEW_FRACTION)),
      // PKCS#8 RSA, as the operator's own; a new key on every renewal.
      privateKey: { algorithm: 'RSA', size: 2048, encoding: 'PKCS8', rotationPolicy: 'Always' },
      // Nodes are TLS servers (peer and client ports) and clients (of their peers).
      usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'],
      issuerRef: {
        name: issuer.name,
        kind: issuer.kind ?? 'Issuer',
        group: issuer.group ?? 'cert-manager.io',
      },
      secretTemplate: { labels: commonLabels(cluster.metadata.name) },
    },
  };
}

/**
 * The `<cluster>-tls` files from the Secrets cert-manager issued (by pod): each pod's tls.crt and tls.key, and
 * every distinct ca.crt among them (several while the issuer's CA rotates, so nodes trust both). Pods without
 * an issued Secret keep the files they had. Pure.
 */
export function filesFromIssued(
  issued: Map<string, Record<string, string>>,
  previous: Record<string, string>,
  pods: string[],
): { files: Record<string, string>; waiting: string[] } {
  const files: Record<string, string> = {};
  const cas = new Set<string>();
  const waiting: string[] = [];
  for (const pod of pods) {
    const source = issued.get(pod);
    const cert = source?.[TLS_CERT_KEY];
    const key = source?.[TLS_KEY_KEY];
    if (cert && key) {
      files[certFileKey(pod)] = cert;
      files[keyFileKey(pod)] = key;
      if (source[CA_CERT_KEY]) cas.add(source[CA_CERT_KEY].trim());
    } else if (previous[certFileKey(pod)] && previous[keyFileKey(pod)]) {
      files[certFileKey(pod)] = previous[certFileKey(pod)]!;
      files[keyFileKey(pod)] = previous[keyFileKey(pod)]!;
    } else {
      waiting.push(pod);
    }
  }
  if (cas.size > 0) files[CA_CERT_KEY] = `${[...cas].sort().join('\n')}\n`;
  else if (previous[CA_CERT_KEY]) files[CA_CERT_KEY] = previous[CA_CERT_KEY];
  return { files, waiting };
}
