/**
 * Signed membership entries: with mutual TLS on, each member signs its own gossip entry with the key of
 * its peer certificate and ships the certificate with it, so any node can check, however many hops the
 * entry took, that it was written by the member it describes. No member can move another's address,
 * take its tokens, change its status or forge its incarnation, and a process without a certificate of
 * the cluster's CA can say nothing at all.
 *
 * The one entry written on behalf of another member is an admin removal's tombstone. It names the
 * member that wrote it (removedBy) and carries that member's signature; a node takes it only about a
 * member its own failure detector holds down, as the admin call itself requires, so no member can
 * remove a live one by gossip.
 *
 * Without TLS there are no keys: entries travel unsigned and are taken as they are (the node warns at
 * start that its peer port trusts what peers say).
 */
import { createPrivateKey, type KeyObject, sign, verify, X509Certificate } from 'node:crypto';
import type { MemberEntry } from './gossip-state.js';

/** The key and certificates of this node's peer TLS, as the files hold them now (they rotate). */
export interface SigningFiles {
  readonly options: { cert: Buffer; key: Buffer; ca: Buffer };
}

/** The bytes a signature covers: every field but the signature and certificate, bound to the cluster. */
function payload(cluster: string, e: MemberEntry): Buffer {
  return Buffer.from(
    JSON.stringify([
      cluster,
      e.id,
      e.address,
      e.http ?? null,
      e.tokens,
      e.rack ?? null,
      e.status,
      e.generation,
      e.version,
      e.removedBy ?? null,
    ]),
  );
}

/** The subject common name of a certificate, or undefined. */
function commonName(cert: X509Certificate): string | undefined {
  const line = cert.subject.split('\n').find((l) => l.startsWith('CN='));
  return line?.slice(3);
}

/** Every certificate in a PEM bundle (a CA file may hold the old and new CA during a rotation). */
function certificates(pem: Buffer): X509Certificate[] {
  const blocks = pem.toString().match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

const CACHE_LIMIT = 4096;

export class EntrySigner {
  private key: { source: Buffer; key: KeyObject; cert: string } | undefined;
  private cas: { source: Buffer; certs: X509Certificate[] } | undefined;
  /** Parsed certificates by their base64 DER: each member's arrives with every entry. */
  private readonly parsed = new Map<string, X509Certificate | null>();

  constructor(
    private readonly cluster: string,
    private readonly files: SigningFiles,
    private readonly now: () => number = Date.now,
  ) {}

  /** entry signed by signer (this node), with its certificate. */
  seal(entry: MemberEntry): MemberEntry {
    const { key, cert } = this.signingKey();
    const unsigned = { ...entry, sig: undefined, cert: undefined };
    const sig = sign('sha256', payload(this.cluster, unsigned), key).toString('base64');
    return { ...unsigned, sig, cert };
  }

  /**
   * Why entry may not be taken, or undefined when it may. isDown(id) is this node's failure-detector
   * verdict, which a tombstone written by another member needs.
   */
  refusal(entry: MemberEntry, isDown: (id: string) => boolean): string | undefined {
    if (entry.sig === undefined || entry.cert === undefined) return 'unsigned';
    const signer = entry.removedBy ?? entry.id;
    if (entry.removedBy !== undefined && entry.status !== 'removed') return 'removedBy on a live entry';
    const cert = this.certificate(entry.cert);
    if (cert === null) return 'its certificate is not from the cluster CA, or not valid now';
    if (commonName(cert) !== signer) return `signed by ${commonName(cert)}, not by ${signer}`;
    let good = false;
    try {
      good = verify('sha256', payload(this.cluster, entry), cert.publicKey, Buffer.from(entry.sig, 'base64'));
    } catch {
      good = false;
    }
    if (!good) return 'bad signature';
    if (entry.removedBy !== undefined && entry.removedBy !== entry.id && !isDown(entry.id))
      return `a removal by ${entry.removedBy} of a member this node does not hold down`;
    return undefined;
  }

  private signingKey(): { key: KeyObject; cert: string } {
    const { key, cert } = this.files.options;
    if (this.key?.source !== key) {
      const first = certificates(cert)[0];
      if (!first) throw new Error('--tls-cert holds no certificate');
      this.key = { source: key, key: createPrivateKey(key), cert: first.raw.toString('base64') };
    }
    return this.key;
  }

  private authorities(): X509Certificate[] {
    const { ca } = this.files.options;
    if (this.cas?.source !== ca) {
      this.cas = { source: ca, certs: certificates(ca) };
      this.parsed.clear();
    }
    return this.cas.certs;
  }

  /** The certificate if the cluster's CA issued it and it is valid now, else null. */
  private certificate(der: string): X509Certificate | null {
    const cas = this.authorities();
    let cert = this.parsed.get(der);
    if (cert === undefined) {
      try {
        const parsed = new X509Certificate(Buffer.from(der, 'base64'));
        cert = cas.some((ca) => parsed.checkIssued(ca) && parsed.verify(ca.publicKey)) ? parsed : null;
      } catch {
        cert = null;
      }
      if (this.parsed.size >= CACHE_LIMIT) this.parsed.clear();
      this.parsed.set(der, cert);
    }
    if (cert === null) return null;
    const t = this.now();
    return t >= Date.parse(cert.validFrom) && t <= Date.parse(cert.validTo) ? cert : null;
  }
}
