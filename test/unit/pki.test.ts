import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import {
  certificateValidity,
  createCa,
  issueCertificate,
  issuedBy,
  needsRenewal,
} from '../../node/src/pki/certificates.js';
import { certificateIdentity } from '../../node/src/transport/tls.js';

describe('cluster certificate authority', () => {
  const ca = createCa('dynamo-test-ca', 30);
  const other = createCa('someone-else', 30);

  it('issues node certificates that pass mutual TLS 1.3 and name the node', async () => {
    const server = issueCertificate(ca, {
      commonName: 'n1',
      dnsNames: ['localhost'],
      ips: ['127.0.0.1'],
      days: 7,
    });
    const client = issueCertificate(ca, { commonName: 'n2', days: 7 });
    const seen: Array<string | undefined> = [];
    const srv = createServer(
      { ...server, ca: ca.cert, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
      (s: TLSSocket) => {
        seen.push(certificateIdentity(s));
        s.end();
      },
    );
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as AddressInfo).port;
    const sock = connect({ host: '127.0.0.1', port, ...client, ca: ca.cert, servername: 'localhost' });
    await once(sock, 'secureConnect');
    expect(certificateIdentity(sock)).toBe('n1');
    await once(sock, 'end');
    sock.destroy();
    srv.close();
    expect(seen).toEqual(['n2']);
  });

  it('a certificate of another CA is refused by the handshake', async () => {
    const server = issueCertificate(ca, { commonName: 'n1', dnsNames: ['localhost'], days: 7 });
    const rogue = issueCertificate(other, { commonName: 'n2', days: 7 });
    const srv = createServer({ ...server, ca: ca.cert, requestCert: true, rejectUnauthorized: true });
    let connected = 0;
    srv.on('secureConnection', () => connected++);
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as AddressInfo).port;
    const sock = connect({ host: '127.0.0.1', port, ...rogue, ca: ca.cert, servername: 'localhost' });
    await new Promise<void>((resolve) => {
      sock.on('error', () => resolve());
      sock.on('close', () => resolve());
    });
    srv.close();
    expect(connected).toBe(0);
    expect(issuedBy(rogue.cert, ca.cert)).toBe(false);
    expect(issuedBy(server.cert, ca.cert)).toBe(true);
  });

  it('renews at two thirds of the lifetime', () => {
    const start = new Date('2026-01-01T00:00:00Z');
    const cert = issueCertificate(ca, { commonName: 'n1', days: 30, now: start });
    const { notAfter } = certificateValidity(cert.cert);
    expect(notAfter.getTime() - start.getTime()).toBe(30 * 86_400_000);
    expect(needsRenewal(cert.cert, new Date('2026-01-15T00:00:00Z'))).toBe(false);
    expect(needsRenewal(cert.cert, new Date('2026-01-21T00:00:00Z'))).toBe(true);
    expect(needsRenewal('not a certificate')).toBe(true);
  });
});
