/**
 * The operator's certificates and tokens as pure objects and decisions: the Secrets it builds, which node
 * certificates it issues or renews, the cert-manager Certificates, the pod template that mounts them, and the
 * admin client that reaches a node over HTTPS with the cluster CA and its token.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { parseTokens } from '../../node/src/api/auth.js';
import {
  certificateValidity,
  createCa,
  issueCertificate,
  issuedBy,
  type KeyPair,
} from '../../node/src/pki/certificates.js';
import type { DynamoCluster, DynamoClusterSpecInput } from '../../operator/src/api-types.js';
import { defaultNodeUrl, nodeDnsNames, podHost } from '../../operator/src/names.js';
import { HttpNodeAdmin, NodeAdminError } from '../../operator/src/node-admin.js';
import { buildAuthSecret, operatorToken, secretText, tokensFile } from '../../operator/src/objects/auth.js';
import { buildStatefulSet, NODE_START_SCRIPT } from '../../operator/src/objects/statefulset.js';
import {
  buildCaSecret,
  buildCertManagerCertificate,
  buildNodeTlsSecret,
  caFromSecret,
  certificateNames,
  expectedNames,
  filesFromIssued,
  MAX_ISSUED_PER_PASS,
  planNodeCertificates,
  secretFiles,
} from '../../operator/src/objects/tls.js';
import { withDefaults } from '../../operator/src/spec.js';

function cluster(spec: DynamoClusterSpecInput = {}): DynamoCluster {
  return {
    apiVersion: 'dynamokv.io/v1alpha1',
    kind: 'DynamoCluster',
    metadata: { name: 'demo', namespace: 'prod', uid: 'uid-42', generation: 1 },
    spec,
  };
}

const DAY = 86_400_000;
const ca = createCa('test ca', 3650);
const otherCa = createCa('other ca', 3650);
const c = cluster();

/** A node certificate as the operator issues it, at `now`, for `days`. */
function nodeCert(ordinal: number, opts: { now?: Date; days?: number; authority?: KeyPair } = {}): KeyPair {
  return issueCertificate(opts.authority ?? ca, {
    ...expectedNames(c, ordinal),
    days: opts.days ?? 90,
    now: opts.now ?? new Date(),
  });
}

function filesOf(pairs: Record<string, KeyPair>): Record<string, string> {
  const out: Record<string, string> = { 'ca.crt': ca.cert };
  for (const [pod, pair] of Object.entries(pairs)) {
    out[`${pod}.crt`] = pair.cert;
    out[`${pod}.key`] = pair.key;
  }
  return out;
}

describe('node certificate names', () => {
  it('name the pod under the peer Service, the client Service and localhost', () => {
    expect(nodeDnsNames(c, 2)).toEqual([
      'demo-2.demo-peers.prod.svc.cluster.local',
      'demo-2.demo-peers.prod.svc',
      'demo-2.demo-peers.prod',
      'demo-2.demo-peers',
      'demo.prod.svc.cluster.local',
      'demo.prod.svc',
      'demo.prod',
      'demo',
      'localhost',
    ]);
    expect(podHost(c, 2)).toBe(nodeDnsNames(c, 2)[0]);
    const names = certificateNames(nodeCert(2).cert);
    expect(names).toEqual({ commonName: 'demo-2', dnsNames: nodeDnsNames(c, 2), ips: ['127.0.0.1'] });
  });

  it('node URLs switch to https with TLS', () => {
    expect(defaultNodeUrl(c, 1, '10.0.0.7')).toBe('http://10.0.0.7:8080');
    expect(defaultNodeUrl(c, 1, '10.0.0.7', 'https')).toBe('https://10.0.0.7:8080');
    expect(defaultNodeUrl(c, 1, undefined, 'https')).toBe(
      'https://demo-1.demo-peers.prod.svc.cluster.local:8080',
    );
  });
});

describe('the CA and node certificate Secrets', () => {
  it('keep the CA as a kubernetes.io/tls Secret owned by the cluster, read back as it was', () => {
    const secret = buildCaSecret(c, ca);
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(secret.metadata?.name).toBe('demo-ca');
    expect(secret.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'DynamoCluster', controller: true });
    expect(caFromSecret(secret)).toEqual(ca);
    // A leaf certificate is no CA; a Secret without the key is none either.
    expect(caFromSecret(buildCaSecret(c, nodeCert(0)))).toBeUndefined();
    expect(caFromSecret({ data: { 'tls.crt': Buffer.from(ca.cert).toString('base64') } })).toBeUndefined();
    expect(caFromSecret(undefined)).toBeUndefined();
  });

  it('hold every node file in one Secret, keys sorted', () => {
    const files = filesOf({ 'demo-1': nodeCert(1), 'demo-0': nodeCert(0) });
    const secret = buildNodeTlsSecret(c, files);
    expect(secret.metadata?.name).toBe('demo-tls');
    expect(Object.keys(secret.data ?? {})).toEqual([
      'ca.crt',
      'demo-0.crt',
      'demo-0.key',
      'demo-1.crt',
      'demo-1.key',
    ]);
    expect(secretFiles(secret)).toEqual(files);
  });
});

describe('planNodeCertificates', () => {
  const now = new Date();
  const base = { cluster: c, caCert: ca.cert, podOrdinals: [] as number[], now };

  it('issues a certificate for every ordinal that has none, and nothing for valid ones', () => {
    const plan = planNodeCertificates({
      ...base,
      files: filesOf({ 'demo-0': nodeCert(0) }),
      ordinals: [0, 1, 2],
    });
    expect(plan.issue).toEqual([
      { ordinal: 1, pod: 'demo-1', reason: 'missing' },
      { ordinal: 2, pod: 'demo-2', reason: 'missing' },
    ]);
    expect(plan.remove).toEqual([]);
    const again = planNodeCertificates({
      ...base,
      files: filesOf({ 'demo-0': nodeCert(0), 'demo-1': nodeCert(1), 'demo-2': nodeCert(2) }),
      ordinals: [0, 1, 2],
    });
    expect(again).toEqual({ issue: [], deferred: 0, remove: [] });
  });

  it('renews a certificate once two thirds of its lifetime are gone, not before', () => {
    const issuedAt = new Date(now.getTime() - 59 * DAY);
    const files = filesOf({ 'demo-0': nodeCert(0, { now: issuedAt }) });
    expect(planNodeCertificates({ ...base, files, ordinals: [0] }).issue).toEqual([]);
    const later = new Date(now.getTime() + 1.1 * DAY);
    expect(planNodeCertificates({ ...base, now: later, files, ordinals: [0] }).issue).toEqual([
      { ordinal: 0, pod: 'demo-0', reason: 'expiring' },
    ]);
    // Expired already (the operator was down): renewed too.
    const expired = filesOf({ 'demo-0': nodeCert(0, { now: new Date(now.getTime() - 100 * DAY) }) });
    expect(planNodeCertificates({ ...base, files: expired, ordinals: [0] }).issue[0]?.reason).toBe(
      'expiring',
    );
  });

  it('re-issues a certificate of another CA, with other names, or that does not parse', () => {
    const wrongCa = filesOf({ 'demo-0': nodeCert(0, { authority: otherCa }) });
    expect(planNodeCertificates({ ...base, files: wrongCa, ordinals: [0] }).issue[0]?.reason).toBe('issuer');
    // demo-1's certificate stored as demo-0's: the common name is not the pod's.
    const swapped = filesOf({ 'demo-0': nodeCert(1) });
    expect(planNodeCertificates({ ...base, files: swapped, ordinals: [0] }).issue[0]?.reason).toBe('names');
    const fewerNames = filesOf({
      'demo-0': issueCertificate(ca, { commonName: 'demo-0', dnsNames: ['demo-0'], days: 90 }),
    });
    expect(planNodeCertificates({ ...base, files: fewerNames, ordinals: [0] }).issue[0]?.reason).toBe(
      'names',
    );
    const garbage = { ...filesOf({}), 'demo-0.crt': 'not a certificate', 'demo-0.key': 'x' };
    expect(planNodeCertificates({ ...base, files: garbage, ordinals: [0] }).issue[0]?.reason).toBe(
      'unreadable',
    );
  });

  it('issues missing certificates first and at most MAX_ISSUED_PER_PASS, the soonest to expire first', () => {
    const old = new Date(now.getTime() - 80 * DAY);
    const pairs: Record<string, KeyPair> = {};
    const count = MAX_ISSUED_PER_PASS + 2;
    for (let i = 0; i < count; i++)
      pairs[`demo-${i}`] = nodeCert(i, { now: new Date(old.getTime() + i * DAY) });
    const files = filesOf(pairs);
    const ordinals = Array.from({ length: count + 1 }, (_, i) => i);
    const plan = planNodeCertificates({ ...base, files, ordinals });
    expect(plan.issue).toHaveLength(MAX_ISSUED_PER_PASS);
    expect(plan.issue[0]).toEqual({ ordinal: count, pod: `demo-${count}`, reason: 'missing' });
    expect(plan.issue.slice(1).map((i) => i.ordinal)).toEqual(
      Array.from({ length: MAX_ISSUED_PER_PASS - 1 }, (_, i) => i),
    );
    expect(plan.deferred).toBe(count - (MAX_ISSUED_PER_PASS - 1));
  });

  it('drops the files of nodes that are gone, but not while their pod still runs', () => {
    const files = filesOf({ 'demo-0': nodeCert(0), 'demo-3': nodeCert(3), 'demo-4': nodeCert(4) });
    const plan = planNodeCertificates({ ...base, files, ordinals: [0], podOrdinals: [0, 4] });
    expect(plan.remove).toEqual(['demo-3']);
    expect(plan.issue).toEqual([]);
  });
});

describe('the auth Secret', () => {
  const secret = buildAuthSecret(c);

  it('holds random admin, write, read and operator tokens, and the tokens file the nodes read', () => {
    expect(secret.metadata?.name).toBe('demo-auth');
    expect(secret.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'DynamoCluster', controller: true });
    const tokens = ['admin-token', 'write-token', 'read-token', 'operator-token'].map(
      (k) => secretText(secret, k)!,
    );
    for (const t of tokens) expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Set(tokens).size).toBe(4);
    const [admin, write, read, operator] = tokens as [string, string, string, string];
    // The node's own parser reads the file; each token has its role.
    const roles = parseTokens(secretText(secret, 'tokens')!, 'tokens');
    expect(roles.size).toBe(4);
    const file = secretText(secret, 'tokens')!;
    expect(file).toContain(`admin ${admin}`);
    expect(file).toContain(`admin ${operator}`);
    expect(file).toContain(`write ${write}`);
    expect(file).toContain(`read ${read}`);
    // Another cluster gets other tokens.
    expect(secretText(buildAuthSecret(c), 'admin-token')).not.toBe(admin);
  });

  it('gives the operator its own token, else the admin token, else an admin line of the file', () => {
    expect(operatorToken(secret)).toBe(secretText(secret, 'operator-token'));
    const enc = (data: Record<string, string>) => ({
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    });
    expect(operatorToken(enc({ 'admin-token': 'a'.repeat(20) }))).toBe('a'.repeat(20));
    const file = tokensFile({ admin: ['b'.repeat(20)], write: ['c'.repeat(20)], read: [] });
    expect(operatorToken(enc({ tokens: file }))).toBe('b'.repeat(20));
    expect(operatorToken(enc({ tokens: 'read xxxxxxxxxxxxxxxxxxxx\n' }))).toBeUndefined();
    expect(operatorToken(undefined)).toBeUndefined();
  });
});

describe('the pod template with TLS and tokens', () => {
  const template = (spec: DynamoClusterSpecInput = {}) => {
    const cl = cluster(spec);
    const set = buildStatefulSet(cl, withDefaults(cl.spec), 3);
    return { set, pod: set.spec!.template.spec!, container: set.spec!.template.spec!.containers[0]! };
  };
  const env = (spec: DynamoClusterSpecInput = {}) =>
    new Map((template(spec).container.env ?? []).map((e) => [e.name, e.value]));

  it('mounts the certificate Secret and points both ports at the pod’s own files', () => {
    const { pod, container, set } = template();
    expect(set.metadata?.annotations).toEqual({ 'dynamokv.io/tls-mode': 'operator' });
    expect(pod.volumes).toContainEqual({
      name: 'tls',
      secret: { secretName: 'demo-tls', defaultMode: 0o400 },
    });
    expect(container.volumeMounts).toContainEqual({
      name: 'tls',
      mountPath: '/etc/dynamo/tls',
      readOnly: true,
    });
    const e = env();
    expect(e.get('DYNAMO_TLS_CERT')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).crt');
    expect(e.get('DYNAMO_TLS_KEY')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).key');
    expect(e.get('DYNAMO_TLS_CA')).toBe('/etc/dynamo/tls/ca.crt');
    expect(e.get('DYNAMO_HTTP_TLS_CERT')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).crt');
    expect(e.get('DYNAMO_HTTP_TLS_KEY')).toBe('/etc/dynamo/tls/$(DYNAMO_NODE_ID).key');
    // $(DYNAMO_NODE_ID) expands only variables defined before.
    const names = (container.env ?? []).map((v) => v.name);
    expect(names.indexOf('DYNAMO_NODE_ID')).toBeLessThan(names.indexOf('DYNAMO_TLS_CERT'));
    // The start script waits for the certificate rather than start a node without it.
    expect(NODE_START_SCRIPT).toContain('[ ! -s "$DYNAMO_TLS_CERT" ]');
  });

  it('mounts only the tokens file of the auth Secret', () => {
    const { pod, container } = template();
    expect(pod.volumes).toContainEqual({
      name: 'auth',
      secret: { secretName: 'demo-auth', defaultMode: 0o400, items: [{ key: 'tokens', path: 'tokens' }] },
    });
    expect(container.volumeMounts).toContainEqual({
      name: 'auth',
      mountPath: '/etc/dynamo/auth',
      readOnly: true,
    });
    expect(env().get('DYNAMO_AUTH_TOKENS_FILE')).toBe('/etc/dynamo/auth/tokens');
  });

  it('has none of it when turned off', () => {
    const { pod, container, set } = template({ tls: { mode: 'disabled' }, auth: { enabled: false } });
    expect(set.metadata?.annotations).toEqual({ 'dynamokv.io/tls-mode': 'disabled' });
    expect(pod.volumes?.map((v) => v.name)).toEqual(['tokens', 'secrets']);
    expect(container.volumeMounts?.map((m) => m.name)).toEqual(['data', 'tokens', 'secrets']);
    const e = env({ tls: { mode: 'disabled' }, auth: { enabled: false } });
    for (const name of [
      'DYNAMO_TLS_CERT',
      'DYNAMO_TLS_KEY',
      'DYNAMO_TLS_CA',
      'DYNAMO_HTTP_TLS_CERT',
      'DYNAMO_AUTH_TOKENS_FILE',
    ])
      expect(e.has(name), name).toBe(false);
  });

  it('is the same in cert-manager mode (the operator copies the issued files into the same Secret)', () => {
    const issuerRef = { name: 'ca-issuer' };
    const a = template({ tls: { mode: 'cert-manager', issuerRef } });
    const b = template();
    expect(a.pod).toEqual(b.pod);
    expect(a.set.metadata?.annotations).toEqual({ 'dynamokv.io/tls-mode': 'cert-manager' });
  });
});

describe('cert-manager mode', () => {
  it('asks for a Certificate per node with the pod as common name, its DNS names, 90 days, renewed at 60', () => {
    const spec = withDefaults({
      tls: { mode: 'cert-manager', issuerRef: { name: 'ca-issuer', kind: 'ClusterIssuer' } },
    });
    const cert = buildCertManagerCertificate(c, spec, 1);
    expect(cert).toEqual({
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: expect.objectContaining({ name: 'demo-1-tls', namespace: 'prod' }),
      spec: {
        secretName: 'demo-1-tls',
        commonName: 'demo-1',
        dnsNames: nodeDnsNames(c, 1),
        ipAddresses: ['127.0.0.1'],
        duration: '2160h',
        renewBefore: '720h',
        privateKey: { algorithm: 'RSA', size: 2048, encoding: 'PKCS8', rotationPolicy: 'Always' },
        usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'],
        issuerRef: { name: 'ca-issuer', kind: 'ClusterIssuer', group: 'cert-manager.io' },
        secretTemplate: { labels: expect.objectContaining({ 'dynamokv.io/cluster': 'demo' }) },
      },
    });
    expect(cert.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'DynamoCluster', controller: true });
    const defaults = buildCertManagerCertificate(
      c,
      withDefaults({ tls: { mode: 'cert-manager', issuerRef: { name: 'x' } } }),
      0,
    );
    expect(defaults.spec.issuerRef).toEqual({ name: 'x', kind: 'Issuer', group: 'cert-manager.io' });
  });

  it('copies the issued files by pod, keeps a pod’s old files until its new ones exist, and bundles every CA', () => {
    const a = nodeCert(0);
    const b = nodeCert(1, { authority: otherCa });
    const issued = new Map([
      ['demo-0', { 'tls.crt': a.cert, 'tls.key': a.key, 'ca.crt': ca.cert }],
      ['demo-1', { 'tls.crt': b.cert, 'tls.key': b.key, 'ca.crt': otherCa.cert }],
    ]);
    const old = nodeCert(2);
    const previous = { 'demo-2.crt': old.cert, 'demo-2.key': old.key, 'ca.crt': ca.cert };
    const { files, waiting } = filesFromIssued(issued, previous, ['demo-0', 'demo-1', 'demo-2', 'demo-3']);
    expect(waiting).toEqual(['demo-3']);
    expect(files['demo-0.crt']).toBe(a.cert);
    expect(files['demo-1.key']).toBe(b.key);
    expect(files['demo-2.crt']).toBe(old.cert);
    // Both CAs while the issuer's rotates: every node still verifies every other.
    expect(files['ca.crt']).toContain(ca.cert.trim());
    expect(files['ca.crt']).toContain(otherCa.cert.trim());
    expect(issuedBy(a.cert, ca.cert)).toBe(true);
  });
});

describe('HttpNodeAdmin over HTTPS', () => {
  const pod = podHost(c, 0);
  const server = issueCertificate(ca, { ...expectedNames(c, 0), days: 1 });
  const token = 'operator-token-0123456789';
  const seen: Array<string | undefined> = [];
  let https: Server;
  let url: string;
  const admin = new HttpNodeAdmin(2_000);

  afterAll(async () => {
    await admin.close();
    https?.close();
  });

  async function start(): Promise<void> {
    https = createServer({ ...server }, (req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ members: [] }));
    });
    https.listen(0, '127.0.0.1');
    await once(https, 'listening');
    url = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
  }

  it('reaches a node by IP, checks its certificate against the CA and the pod’s DNS name, and sends the token', async () => {
    await start();
    const view = await admin.ring(url, false, { ca: ca.cert, serverName: pod, token });
    expect(view.members).toEqual([]);
    expect(seen.at(-1)).toBe(`Bearer ${token}`);
    expect(certificateValidity(server.cert).notAfter.getTime()).toBeGreaterThan(Date.now());
  });

  it('refuses a node whose certificate another CA issued, or that names another pod, or https without a CA', async () => {
    const before = seen.length;
    const wrongCa = admin.ring(url, false, { ca: otherCa.cert, serverName: pod, token });
    await expect(wrongCa).rejects.toThrow(NodeAdminError);
    await expect(wrongCa).rejects.toThrow(/certificate/);
    await expect(admin.ring(url, false, { ca: ca.cert, serverName: podHost(c, 1), token })).rejects.toThrow(
      /demo-1\.demo-peers/,
    );
    await expect(admin.ring(url, false, { token })).rejects.toThrow(/without the cluster CA/);
    // None of them got as far as sending the token.
    expect(seen.length).toBe(before);
  });
});
