/**
 * Certificate rotation under a running workload, on real gossip nodes with mutual TLS: the cluster moves
 * from CA 1 to CA 2 in the usual three steps (trust both, swap every node's certificate and key, trust
 * only the new CA) by rewriting files in place, no restart, and no write is refused meanwhile. Afterwards
 * a certificate of the new CA gets a hello answered and one of the old CA does not, and gossip (whose
 * entries carry the signer's certificate) still sees every member up.
 */
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameKind } from '../../node/src/transport/frame.js';
import { makeCa, makeNodeCert, type NodeCert } from '../support/certs.js';
import { TestCluster, waitFor } from './harness.js';

const IDS = ['n1', 'n2', 'n3'];
/** Longer than the nodes' 5 s check of their files. */
const RELOAD_MS = 6500;

/** Replaces a file atomically, as a Secret volume update or a careful operator does. */
function replace(path: string, content: Buffer | string): void {
  writeFileSync(`${path}.new`, content);
  renameSync(`${path}.new`, path);
}

/** Whether a hello with this certificate is answered by the peer port (HelloOk), or the handshake fails. */
function helloAnswered(port: number, cert: NodeCert, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      cert: readFileSync(cert.cert),
      key: readFileSync(cert.key),
      ca,
      rejectUnauthorized: false,
    });
    const decoder = new FrameDecoder();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.on('secureConnect', () => {
      for (const part of encodeFrame(FrameKind.Hello, 0, { cluster: 'dynamo', node: 'n2', protocol: 1 }))
        socket.write(part);
    });
    socket.on('data', (d) => {
      for (const f of decoder.push(d)) done(f.kind === FrameKind.HelloOk);
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
    setTimeout(() => done(false), 4000);
  });
}

describe('certificate rotation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-rotate-'));
  let c: TestCluster | undefined;
  afterAll(async () => {
    await c?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves the cluster to a new CA under writes, without a restart or a refused write', async () => {
    const ca1 = makeCa(dir, 'ca1');
    const ca2 = makeCa(dir, 'ca2');
    const live = join(dir, 'live');
    mkdirSync(live);
    const files = (id: string) => ({ cert: join(live, `${id}.crt`), key: join(live, `${id}.key`) });
    const caFile = join(live, 'ca.pem');
    const install = (id: string, cert: NodeCert) => {
      // The key first, then the certificate: in between the pair does not match, and the node keeps
      // its last good set until the next check.
      replace(files(id).key, readFileSync(cert.key));
      replace(files(id).cert, readFileSync(cert.cert));
    };
    const pem1 = readFileSync(ca1.cert);
    const pem2 = readFileSync(ca2.cert);
    replace(caFile, pem1);
    for (const id of IDS) install(id, makeNodeCert(ca1, id));
    c = await TestCluster.start(3, ['--gossip-interval-ms', '200'], {
      gossip: true,
      perNode: (id) => ['--tls-cert', files(id).cert, '--tls-key', files(id).key, '--tls-ca', caFile],
    });
    const cluster = c;
    const allUp = async (i: number) => {
      const ring = (await (await fetch(`${cluster.url(i)}/admin/ring`)).json()) as {
        members: Array<{ state: string }>;
      };
      return ring.members.length === 3 && ring.members.every((m) => m.state === 'up');
    };
    for (const i of [0, 1, 2]) await waitFor(`n${i + 1} sees all up`, () => allUp(i), 30_000);

    // The workload: writes with w=all through each node in turn, until the rotation is over.
    let stop = false;
    const acked: string[] = [];
    const refused: string[] = [];
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const key = `k${i}`;
        const res = await fetch(`${cluster.url(i % 3)}/buckets/rot/keys/${key}?w=all`, {
          method: 'PUT',
          body: key,
        });
        if (res.status === 204) acked.push(key);
        else refused.push(`${key}: ${res.status} ${await res.text()}`);
      }
    })();

    replace(caFile, Buffer.concat([pem1, pem2])); // 1. trust both CAs
    await new Promise((r) => setTimeout(r, RELOAD_MS));
    for (const id of IDS) install(id, makeNodeCert(ca2, id, `${id}-v2`)); // 2. new certificates
    await new Promise((r) => setTimeout(r, RELOAD_MS));
    replace(caFile, pem2); // 3. trust only the new CA
    await new Promise((r) => setTimeout(r, RELOAD_MS));
    stop = true;
    await writer;

    expect(refused).toEqual([]);
    expect(acked.length).toBeGreaterThan(50);
    // New connections take the new files: the new CA's certificate is let in, the old one's is not.
    const port = c.nodes[0]!.peerPort;
    expect(await helloAnswered(port, makeNodeCert(ca2, 'n2', 'n2-probe'), pem2)).toBe(true);
    expect(await helloAnswered(port, makeNodeCert(ca1, 'n2', 'n2-old'), pem2)).toBe(false);
    // Gossip entries are now signed with the new certificates, and taken everywhere.
    for (const i of [0, 1, 2]) await waitFor(`n${i + 1} still sees all up`, () => allUp(i), 15_000);
    for (const key of acked.slice(-20)) {
      const res = await fetch(`${c.url(1)}/buckets/rot/keys/${key}?r=all`);
      expect(await res.text()).toBe(key);
    }
  }, 120_000);
});
