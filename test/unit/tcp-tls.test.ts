import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PeerUnavailableError } from '../../node/src/errors.js';
import { TcpTransport } from '../../node/src/transport/tcp.js';
import { PeerTls } from '../../node/src/transport/tls.js';
import { makeCa, makeNodeCert, type NodeCert, type TestCa } from '../support/certs.js';

const HOST = '127.0.0.1';
const open: TcpTransport[] = [];
let dir: string;
let ca: TestCa;
let rogueCa: TestCa;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dynamo-tls-'));
  ca = makeCa(dir, 'cluster');
  rogueCa = makeCa(dir, 'rogue');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

function transport(self: string, ports: Map<string, number>, cert: NodeCert | undefined): TcpTransport {
  const t = new TcpTransport({
    self,
    cluster: 'test',
    host: HOST,
    port: 0,
    resolve: (peer) => (ports.has(peer) ? `${HOST}:${ports.get(peer)}` : undefined),
    ...(cert ? { tls: new PeerTls(cert) } : {}),
  });
  open.push(t);
  return t;
}

/** A server b with the cluster's certificate for b, recording what reaches its handler. */
async function server() {
  const ports = new Map<string, number>();
  const handled: Array<{ from: string; body: unknown }> = [];
  const b = transport('b', ports, makeNodeCert(ca, 'b'));
  await b.listen(async (from, body) => {
    handled.push({ from, body });
    return 'pong';
  });
  ports.set('b', b.port);
  return { ports, handled };
}

describe('mutual TLS on the peer port', () => {
  it('connects members holding certificates of the cluster CA, each known by its certificate', async () => {
    const { ports, handled } = await server();
    const a = transport('a', ports, makeNodeCert(ca, 'a'));
    expect(await a.request('b', { op: 'ping' }, 3000)).toBe('pong');
    expect(handled).toEqual([{ from: 'a', body: { op: 'ping' } }]);
  });

  it('lets nothing through for a process with no certificate, or one of another CA', async () => {
    const { ports, handled } = await server();
    for (const cert of [undefined, makeNodeCert(rogueCa, 'a', 'rogue-a')]) {
      const intruder = transport('a', ports, cert);
      const err = await intruder.request('b', { op: 'stream.pull' }, 3000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PeerUnavailableError);
    }
    expect(handled).toEqual([]);
  });

  it('refuses a member whose hello claims another node than its certificate names', async () => {
    const { ports, handled } = await server();
    // c's certificate, claiming to be a.
    const liar = transport('a', ports, makeNodeCert(ca, 'c'));
    const err = await liar.request('b', { op: 'put' }, 3000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerUnavailableError);
    expect((err as Error).message).toMatch(/names another node/);
    expect(handled).toEqual([]);
  });

  it('refuses to talk to a server whose certificate names another node than the one asked for', async () => {
    const ports = new Map<string, number>();
    const impostor = transport('x', ports, makeNodeCert(ca, 'x'));
    await impostor.listen(async () => 'stolen');
    ports.set('b', impostor.port); // b's address now leads to x
    const a = transport('a', ports, makeNodeCert(ca, 'a'));
    const err = await a.request('b', { op: 'get' }, 3000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerUnavailableError);
  });

  it('takes rotated certificate files without a restart', async () => {
    const ports = new Map<string, number>();
    const files = {
      cert: join(dir, 'b-live.crt'),
      key: join(dir, 'b-live.key'),
      ca: join(dir, 'b-live-ca.crt'),
    };
    const first = makeNodeCert(ca, 'b', 'b1');
    copyFileSync(first.cert, files.cert);
    copyFileSync(first.key, files.key);
    copyFileSync(ca.cert, files.ca);
    const b = new TcpTransport({
      self: 'b',
      cluster: 'test',
      host: HOST,
      port: 0,
      resolve: () => undefined,
      tls: new PeerTls(files),
    });
    open.push(b);
    await b.listen(async () => 'pong');
    ports.set('b', b.port);
    // Rotate to a new CA: clients of the old one must fail once the node has reloaded, those of the new pass.
    const next = makeCa(dir, 'next');
    const second = makeNodeCert(next, 'b', 'b2');
    copyFileSync(second.cert, files.cert);
    copyFileSync(second.key, files.key);
    copyFileSync(next.cert, files.ca);
    const a = transport('a', ports, makeNodeCert(next, 'a', 'a-next'));
    // The server checks its files every few seconds, on new connections.
    const deadline = Date.now() + 15_000;
    let answer: unknown;
    while (Date.now() < deadline) {
      answer = await a.request('b', { op: 'ping' }, 2000).catch((e: unknown) => e);
      if (answer === 'pong') break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(answer).toBe('pong');
    const old = transport('o', ports, makeNodeCert(ca, 'o'));
    expect(await old.request('b', { op: 'ping' }, 2000).catch((e: unknown) => e)).not.toBe('pong');
  }, 30_000);
});
