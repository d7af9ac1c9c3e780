/**
 * Mutual TLS for the peer port, from certificate files read again when they change
 * (runtime/watched-files.ts), so they rotate without a restart.
 * every node holds a certificate from the cluster's CA whose subject common name is its node
 * id. A peer's identity is its certificate, not what its hello says: a process without a certificate of
 * the cluster's CA completes no handshake, and a node cannot speak for another. Connections made after
 * a rotation use the new files.
 */
import type { PeerCertificate, SecureContext, TLSSocket } from 'node:tls';
import { createSecureContext } from 'node:tls';
import { WatchedFiles } from '../runtime/watched-files.js';

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export class PeerTls {
  private context!: SecureContext;
  private readonly files: WatchedFiles<'cert' | 'key' | 'ca'>;

  constructor(paths: TlsFiles, onError: (err: Error) => void = () => undefined) {
    this.files = new WatchedFiles(
      paths,
      (pem) => {
        this.context = createSecureContext({ ...pem, minVersion: 'TLSv1.3' });
      },
      onError,
      '--tls-cert/--tls-key/--tls-ca',
    );
  }

  /** The PEM options of the current files, for a TLS server (setSecureContext takes options). */
  get options(): { cert: Buffer; key: Buffer; ca: Buffer; minVersion: 'TLSv1.3' } {
    return { ...this.files.current, minVersion: 'TLSv1.3' };
  }

  /** Told of each reload (the server swaps its context). */
  set onReload(listener: () => void) {
    this.files.onChange(listener);
  }

  /** The current context, for outbound connections. */
  secureContext(): SecureContext {
    return this.context;
  }

  close(): void {
    this.files.close();
  }
}

/** The node id a verified peer certificate names (its subject common name), or undefined. */
export function certificateIdentity(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cert: PeerCertificate = socket.getPeerCertificate();
  const cn = cert?.subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}
