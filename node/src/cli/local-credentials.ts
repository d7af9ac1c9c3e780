/**
 * What `dynamo local` secures its cluster with, made once under its data directory and kept across
 * restarts: the context secret, client tokens (one per role) and, unless --insecure, a local CA with a
 * certificate per node (mutual TLS between nodes, HTTPS for clients). A node certificate is made again
 * when it is missing, no longer of the CA, or two thirds through its lifetime.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { createCa, issueCertificate, issuedBy, needsRenewal } from '../pki/certificates.js';

const CA_DAYS = 3650;
const NODE_CERT_DAYS = 365;

export interface LocalTls {
  dir: string;
  /** The CA certificate clients trust (DYNAMO_CA, curl --cacert). */
  ca: string;
  /** A node's certificate and key files. */
  node(id: string): { cert: string; key: string };
  /** True when the CA was made by this start. */
  newCa: boolean;
}

export interface LocalCredentials {
  secretFile: string;
  tokensFile: string;
  /** True when the tokens were made by this start (the admin token is then printed in full). */
  newTokens: boolean;
  adminToken: string | undefined;
  tls: LocalTls | undefined;
}

const secret = (path: string, content: string) => writeFileSync(path, content, { mode: 0o600 });

/** The credentials of a local cluster of nodes ids on host, made where missing. */
export function localCredentials(
  dataDir: string,
  ids: string[],
  host: string,
  insecure: boolean,
): LocalCredentials {
  mkdirSync(dataDir, { recursive: true });
  // The cluster's context secret: every node authenticates contexts with it.
  const secretFile = join(dataDir, 'context-secret');
  if (!existsSync(secretFile)) secret(secretFile, randomBytes(32).toString('hex'));
  // Client tokens, one per role: the API is not open even on one machine.
  const tokensFile = join(dataDir, 'tokens');
  const newTokens = !existsSync(tokensFile);
  if (newTokens) {
    const lines = ['admin', 'write', 'read'].map((role) => `${role} ${randomBytes(24).toString('hex')}`);
    secret(tokensFile, `# role token (dynamo local made these; edit to rotate)\n${lines.join('\n')}\n`);
  }
  const adminToken = readFileSync(tokensFile, 'utf8').match(/^admin (\S+)$/m)?.[1];
  return {
    secretFile,
    tokensFile,
    newTokens,
    adminToken,
    tls: insecure ? undefined : localTls(join(dataDir, 'tls'), ids, host),
  };
}

function localTls(dir: string, ids: string[], host: string): LocalTls {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caCert = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  const newCa = !existsSync(caCert) || !existsSync(caKey);
  if (newCa) {
    const ca = createCa('dynamo-kv local CA', CA_DAYS);
    secret(caKey, ca.key);
    writeFileSync(caCert, ca.cert);
  }
  const ca = { cert: readFileSync(caCert, 'utf8'), key: readFileSync(caKey, 'utf8') };
  const files = (id: string) => ({ cert: join(dir, `${id}.crt`), key: join(dir, `${id}.key`) });
  const ips = [...new Set(['127.0.0.1', ...(isIP(host) ? [host] : [])])];
  const dnsNames = [...new Set(['localhost', ...(isIP(host) ? [] : [host])])];
  for (const id of ids) {
    const { cert, key } = files(id);
    const current = existsSync(cert) && existsSync(key) ? readFileSync(cert, 'utf8') : undefined;
    if (current && issuedBy(current, ca.cert) && !needsRenewal(current)) continue;
    const issued = issueCertificate(ca, { commonName: id, dnsNames, ips, days: NODE_CERT_DAYS });
    secret(key, issued.key);
    writeFileSync(cert, issued.cert);
  }
  return { dir, ca: caCert, node: files, newCa };
}
