/**
 * A real node with HTTPS, client tokens, client certificates (--http-client-ca) and a separate admin
 * listener (--admin-port): admin calls are served only on the admin port, a client certificate's OU is
 * its role (no token needed), and a certificate of another CA is no credential.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoClient } from '../../node/src/client/index.js';
import { makeCa, makeNodeCert, type NodeCert } from '../support/certs.js';
import { CLI, freePortRange, waitFor } from './harness.js';

const ADMIN = 'admin-token-0123456789abcdef';
const WRITE = 'write-token-0123456789abcdef';

describe('admin listener and client certificates', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-admin-'));
  let server: NodeCert;
  let writer: NodeCert;
  let adminCert: NodeCert;
  let foreign: NodeCert;
  let proc: ChildProcess;
  let client: string;
  let admin: string;
  let trust: Buffer;
  beforeAll(async () => {
    const ca = makeCa(dir, 'ca');
    server = makeNodeCert(ca, 'localhost');
    writer = makeNodeCert(ca, 'app', 'app', 'write');
    adminCert = makeNodeCert(ca, 'ops', 'ops', 'admin');
    foreign = makeNodeCert(makeCa(dir, 'other'), 'ops', 'ops-foreign', 'admin');
    trust = readFileSync(ca.cert);
    const tokens = join(dir, 'tokens');
    writeFileSync(tokens, `admin ${ADMIN}\nwrite ${WRITE}\n`);
    const port = await freePortRange(3);
    client = `https://127.0.0.1:${port}`;
    admin = `https://127.0.0.1:${port + 2}`;
    const args = [CLI, 'node', '--node-id', 'n1', '--data-dir', join(dir, 'data')];
    args.push('--http-host', '127.0.0.1', '--http-port', String(port), '--admin-port', String(port + 2));
    args.push('--peer-host', '127.0.0.1', '--peer-port', String(port + 1));
    args.push('--http-tls-cert', server.cert, '--http-tls-key', server.key, '--http-client-ca', ca.cert);
    args.push('--auth-tokens-file', tokens, '--log-level', 'warn');
    args.push('--default-n', '1', '--default-r', '1', '--default-w', '1');
    proc = spawn(process.execPath, args, { stdio: 'ignore' });
    const agent = new Agent({ connect: { ca: trust } });
    await waitFor('node ready', async () => (await fetch(`${client}/ready`, { dispatcher: agent })).ok);
  });
  afterAll(() => {
    proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** A request as a client holding cert (or none), with token (or none). */
  const call = async (url: string, method: string, cert?: NodeCert, token?: string, body?: string) => {
    const connect = cert
      ? { ca: trust, cert: readFileSync(cert.cert), key: readFileSync(cert.key) }
      : { ca: trust };
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetch(url, { method, headers, body, dispatcher: new Agent({ connect }) });
    const text = await res.text();
    return { status: res.status, error: text.startsWith('{') ? (JSON.parse(text).error as string) : text };
  };
  const props = '{"n":1,"r":1,"w":1}';

  it('serves admin calls only on the admin port', async () => {
    expect((await call(`${client}/buckets/b/keys/k`, 'PUT', undefined, WRITE, 'v')).status).toBe(204);
    for (const [path, method, body] of [
      ['/buckets/b/props', 'PUT', props],
      ['/admin/cleanup', 'POST', undefined],
      ['/admin/members/n9/remove', 'POST', undefined],
    ] as const) {
      expect(await call(`${client}${path}`, method, undefined, ADMIN, body)).toEqual({
        status: 403,
        error: 'admin_listener',
      });
    }
    // Reads of the ring and status stay on the client port (DynamoClient routes by the ring).
    expect((await call(`${client}/admin/ring`, 'GET', undefined, WRITE)).status).toBe(200);
    expect((await call(`${admin}/buckets/b/props`, 'PUT', undefined, ADMIN, props)).status).toBe(200);
    expect((await call(`${admin}/buckets/b/props`, 'PUT', undefined, undefined, props)).status).toBe(401);
    expect((await call(`${admin}/buckets/b/props`, 'PUT', undefined, WRITE, props)).status).toBe(403);
  });

  it('takes a client certificate of its CA as a credential with the role its OU names', async () => {
    const db = new DynamoClient({
      seeds: [client],
      ca: trust,
      cert: readFileSync(writer.cert),
      key: readFileSync(writer.key),
    });
    try {
      await db.put('b', 'by-cert', Buffer.from('hello'));
      const got = await db.get('b', 'by-cert');
      expect('value' in got && got.value.toString()).toBe('hello');
    } finally {
      await db.close();
    }
    // A write certificate cannot change props; an admin one can, on the admin port.
    expect((await call(`${admin}/buckets/b/props`, 'PUT', writer, undefined, props)).error).toBe('forbidden');
    expect((await call(`${admin}/buckets/b/props`, 'PUT', adminCert, undefined, props)).status).toBe(200);
    // The same subject from another CA is no credential.
    expect((await call(`${client}/buckets/b/keys/x`, 'PUT', foreign, undefined, 'v')).status).toBe(401);
    // The CLI with --cert and --key.
    const { stdout } = await promisify(execFile)(process.execPath, [
      CLI,
      'get',
      'b',
      'by-cert',
      '--endpoint',
      client,
      ...['--ca', join(dir, 'ca', 'ca.crt'), '--cert', writer.cert, '--key', writer.key],
    ]);
    expect(stdout.trim()).toBe('hello');
  });
});
