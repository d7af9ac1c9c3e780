/**
 * Mutual TLS for the peer port: every node holds a certificate from the cluster's CA whose subject
 * common name is its node id. A peer's identity is its certificate, not what its hello says: a process
 * without a certificate of the cluster's CA completes no handshake, and a node cannot speak for another.
 * The files are read again when they change, so certificates rotate without a restart (connections made
 * after the change use the new ones).
 */
import { readFileSync, statSync } from 'node:fs';
import type { PeerCertificate, SecureContext, TLSSocket } from 'node:tls';
import { createSecureContext } from 'node:tls';
import { InvalidRequestError } from '../errors.js';

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** How often the files' modification times are checked. */
const RECHECK_MS = 5000;

export class PeerTls {
  private context!: SecureContext;
  /** The PEM buffers of the current context, for a TLS server (setSecureContext takes options). */
  options!: { cert: Buffer; key: Buffer; ca: Buffer; minVersion: 'TLSv1.3' };
  private stamp = '';
  /** Told of each reload (the server swaps its context). */
  onReload: (() => void) | undefined;

  constructor(
    private readonly files: TlsFiles,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {
    this.load(true);
    this.timer = setInterval(() => this.load(false), RECHECK_MS);
    this.timer.unref();
  }

  private readonly timer: NodeJS.Timeout;

  /** The current context (the files are checked every few seconds). */
  secureContext(): SecureContext {
    return this.context;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private load(first: boolean): void {
    try {
      const stamp = [this.files.cert, this.files.key, this.files.ca]
        .map((f) => statSync(f).mtimeMs)
        .join(',');
      if (stamp === this.stamp) return;
      const read = (f: string) => readFileSync(f);
      const options = {
        cert: read(this.files.cert),
        key: read(this.files.key),
        ca: read(this.files.ca),
        minVersion: 'TLSv1.3' as const,
      };
      this.context = createSecureContext(options);
      this.options = options;
      this.stamp = stamp;
      if (!first) this.onReload?.();
    } catch (err) {
      if (first)
        throw new InvalidRequestError(
          'invalid_config',
          `--tls-cert/--tls-key/--tls-ca: ${(err as Error).message}`,
        );
      // A half-written rotation: keep the last good context and try again later.
      this.onError(err as Error);
    }
  }
}

/** The node id a verified peer certificate names (its subject common name), or undefined. */
export function certificateIdentity(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cert: PeerCertificate = socket.getPeerCertificate();
  const cn = cert?.subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}
