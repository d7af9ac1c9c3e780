/**
 * A cluster's certificate authority and the certificates it issues: one per node, naming the node id
 * as subject common name (the peer port's identity, transport/tls.ts), usable as TLS server and
 * client, and one for clients of the HTTP port. Used by `dynamo local` (files under ./data/tls) and by
 * the operator (Secrets). Keys are RSA 2048, made by Node's own crypto; node-forge builds and signs
 * the X.509 structures, which Node cannot create.
 */
import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import forge from 'node-forge';

export interface KeyPair {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (PKCS#8). */
  key: string;
}

export interface IssueOptions {
  /** Subject common name: a node id for a node certificate. */
  commonName: string;
  /** DNS names and IP addresses the certificate is valid for as a server. */
  dnsNames?: string[];
  ips?: string[];
  days: number;
  /** Start of validity; now by default (backdated an hour: a node whose clock is behind still accepts it). */
  now?: Date;
}

const MINUTE = 60_000;
/**
 * How far before its issue a certificate becomes valid: a peer whose clock runs behind (by less than
 * this) must not see its peers' certificates as not yet valid, which would cut it off the cluster.
 */
const SKEW_MARGIN_MS = 60 * MINUTE;

function newKey(): { forgeKey: forge.pki.rsa.PrivateKey; pem: string; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { forgeKey, pem, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

function validity(cert: forge.pki.Certificate, now: Date, days: number): void {
  // A positive serial of 16 random bytes (RFC 5280: at most 20 octets, non-negative).
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  cert.serialNumber = serial.toString('hex');
  cert.validity.notBefore = new Date(now.getTime() - SKEW_MARGIN_MS);
  cert.validity.notAfter = new Date(now.getTime() + days * 24 * 60 * MINUTE);
}

/** A new self-signed CA named name, valid for days. */
export function createCa(name: string, days: number, now = new Date()): KeyPair {
  const { forgeKey, pem, publicKey } = newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  validity(cert, now, days);
  const subject = [{ name: 'commonName', value: name }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: pem };
}

/** A certificate of ca for options.commonName, usable for TLS as server and client. */
export function issueCertificate(ca: KeyPair, options: IssueOptions): KeyPair {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const { pem, publicKey } = newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  validity(cert, options.now ?? new Date(), options.days);
  cert.setSubject([{ name: 'commonName', value: options.commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(options.ips ?? []).map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: pem };
}

/** When a PEM certificate stops being valid, and when it started. */
export function certificateValidity(pem: string): { notBefore: Date; notAfter: Date } {
  const x = new X509Certificate(pem);
  return { notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo) };
}

/**
 * True once a certificate has used up `fraction` of its lifetime (renew at two thirds, as
 * cert-manager does by default), or when it does not parse.
 */
export function needsRenewal(pem: string, now = new Date(), fraction = 2 / 3): boolean {
  try {
    const { notBefore, notAfter } = certificateValidity(pem);
    const renewAt = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) * fraction;
    return now.getTime() >= renewAt;
  } catch {
    return true;
  }
}

/** True when pem was issued by ca (its signature verifies with the CA's key). */
export function issuedBy(pem: string, caPem: string): boolean {
  try {
    const cert = new X509Certificate(pem);
    const ca = new X509Certificate(caPem);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}
