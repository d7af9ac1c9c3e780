/**
 * Test certificate authorities and node certificates, made with the openssl command (installed by
 * hack/install-test-tools.sh when missing): EC P-256, valid for two days, usable as TLS client and
 * server, the node id as subject common name.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureTools } from './system-tools.js';

export interface TestCa {
  dir: string;
  cert: string;
  key: string;
}

export interface NodeCert {
  cert: string;
  key: string;
  ca: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A new CA in dir/<name>. */
export function makeCa(dir: string, name: string): TestCa {
  ensureTools(['openssl'], 'install-test-tools.sh');
  const at = join(dir, name);
  mkdirSync(at, { recursive: true });
  const cert = join(at, 'ca.crt');
  const key = join(at, 'ca.key');
  openssl(['req', '-x509', ...EC, '-keyout', key, '-out', cert, '-subj', `/CN=${name}`, '-days', '2']);
  return { dir: at, cert, key };
}

/**
 * A certificate of ca naming node id (its common name); file stem defaults to the id; ou adds a subject
 * organizational unit (a client certificate's role).
 */
export function makeNodeCert(ca: TestCa, id: string, stem = id, ou?: string): NodeCert {
  const key = join(ca.dir, `${stem}.key`);
  const csr = join(ca.dir, `${stem}.csr`);
  const cert = join(ca.dir, `${stem}.crt`);
  const ext = join(ca.dir, `${stem}.ext`);
  writeFileSync(ext, 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['req', ...EC, '-keyout', key, '-out', csr, '-subj', `${ou ? `/OU=${ou}` : ''}/CN=${id}`]);
  openssl(
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial'].concat([
      '-out',
      cert,
      '-days',
      '2',
      '-extfile',
      ext,
    ]),
  );
  return { cert, key, ca: ca.cert };
}
