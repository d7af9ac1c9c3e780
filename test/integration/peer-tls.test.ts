/**
 * Mutual TLS between real node processes: a cluster whose nodes hold certificates of its CA serves as
 * usual, and a process without one, or with a certificate of another CA, gets no hello answered and
 * learns nothing (not even the cluster's name).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameKind } from '../../node/src/transport/frame.js';
import { makeCa, makeNodeCert, type NodeCert } from '../support/certs.js';
import { TestCluster } from './harness.js';

describe('mutual TLS between nodes', () => {
  let c: TestCluster;
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-ptls-'));
  const certs = new Map<string, NodeCert>();
  let rogue: NodeCert;
  beforeAll(async () => {
    const ca = makeCa(dir, 'cluster');
    for (const id of ['n1', 'n2', 'n3']) certs.set(id, makeNodeCert(ca, id));
    rogue = makeNodeCert(makeCa(dir, 'rogue'), 'n1', 'rogue-n1');
    c = await TestCluster.start(3, [], {
      perNode: (id) => {
        const cert = certs.get(id)!;
        return ['--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-ca', cert.ca];
      },
    });
  });
  afterAll(async () => {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('replicates over TLS: a write through one node reads back through the others with r=all', async () => {
    expect(
      (await fetch(`${c.url(0)}/buckets/t/keys/k?w=all`, { method: 'PUT', body: 'over tls' })).status,
    ).toBe(204);
    for (const i of [1, 2])
      expect(await (await fetch(`${c.url(i)}/buckets/t/keys/k?r=all`)).text()).toBe('over tls');
  });

  /** What a raw connection to n2's peer port receives after saying hello as n1, until it closes. */
  const hello = (socket: ReturnType<typeof netConnect>) =>
    new Promise<Buffer>((resolve) => {
      const got: Buffer[] = [];
      socket.on('data', (d) => got.push(d));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Buffer.concat(got)));
      for (const part of encodeFrame(FrameKind.Hello, 0, { cluster: 'dynamo', node: 'n1', protocol: 1 }))
        socket.write(part);
      setTimeout(() => socket.destroy(), 3000);
    });

  it('answers nothing to plain TCP or to a certificate of another CA', async () => {
    const port = c.nodes[1]!.peerPort;
    const plain = await hello(netConnect(port, '127.0.0.1'));
    expect(plain.includes(Buffer.from('dynamo'))).toBe(false);
    expect(plain.length).toBeLessThan(64); // at most a TLS alert, never a frame
    const foreign = tlsConnect({
      host: '127.0.0.1',
      port,
      cert: readFileSync(rogue.cert),
      key: readFileSync(rogue.key),
      ca: readFileSync(rogue.ca),
      rejectUnauthorized: false,
    });
    const answer = await hello(foreign);
    expect(answer.length).toBe(0);
    // The cluster still serves.
    expect((await fetch(`${c.url(1)}/buckets/t/keys/k`)).status).toBe(200);
  });
});
