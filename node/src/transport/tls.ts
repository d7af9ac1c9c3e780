/**
 * Certificates from files that are read again when they change (every few seconds), so they rotate
 * without a restart; and mutual TLS for the peer port built on them.
 *
 * Peer port: every node holds a certificate from the cluster's CA whose subject common name is its node
 * id. A peer's identity is its certificate, not what its hello says: a process without a certificate of
 * the cluster's CA completes no handshake, and a node cannot speak for another. Connections made after
 * a rotation use the new files.
 */
import { readFileSync, statSync } from 'node:fs';
import type { PeerCertificate, SecureContext, TLSSocket } from 'node:tls';
import { createSecureContext } from 'node:tls';
import { InvalidRequestError } from '../errors.js';

/** How often the files' modification times are checked. */
const RECHECK_MS = 5000;

/** PEM files by name, reloaded when any changes; a half-written rotation keeps the last good set. */
export class WatchedFiles<K extends string> {
  private contents!: Record<K, Buffer>;
  private stamp = '';
  private readonly listeners: Array<() => void> = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly files: Record<K, string>,
    /** Checks a new set (e.g. builds a TLS context); throws to refuse it. */
    private readonly accept: (contents: Record<K, Buffer>) => void,
    private readonly onError: (err: Error) => void,
    what: string,
  ) {
    try {
      this.load();
    } catch (err) {
      throw new InvalidRequestError('invalid_config', `${what}: ${(err as Error).message}`);
    }
    this.timer = setInterval(() => {
      try {
        if (this.load()) for (const listener of this.listeners) listener();
      } catch (err) {
        this.onError(err as Error);
      }
    }, RECHECK_MS);
    this.timer.unref();
  }

  get current(): Record<K, Buffer> {
    return this.contents;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Reads the files if they changed; true when a new set was taken. */
  private load(): boolean {
    const names = Object.keys(this.files) as K[];
    const stamp = names.map((k) => statSync(this.files[k]).mtimeMs).join(',');
    if (stamp === this.stamp) return false;
    const contents = Object.fromEntries(names.map((k) => [k, readFileSync(this.files[k])])) as Record<
      K,
      Buffer
    >;
    this.accept(contents);
    this.contents = contents;
    this.stamp = stamp;
    return true;
  }
}

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
