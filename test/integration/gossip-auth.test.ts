/**
 * Gossip only from members, only about themselves, on real node processes with mutual TLS: a member
 * that holds a valid certificate cannot move another member's address, remove a live member, speak for
 * it, or add a phantom member; the admin removal of a dead member still reaches every node.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EntrySigner } from '../../node/src/membership/entry-signing.js';
import type { MemberEntry } from '../../node/src/membership/gossip-state.js';
import { TcpTransport } from '../../node/src/transport/tcp.js';
import { PeerTls } from '../../node/src/transport/tls.js';
import { makeCa, makeNodeCert, type NodeCert } from '../support/certs.js';
import { TestCluster, waitFor } from './harness.js';

interface RingView {
  members: Array<{ id: string; state: string; address: string }>;
}
const ring = async (url: string) => (await (await fetch(`${url}/admin/ring`)).json()) as RingView;
const FAST = ['--gossip-interval-ms', '200', '--phi-threshold', '4'];

describe('signed gossip', () => {
  let c: TestCluster;
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-gauth-'));
  const certs = new Map<string, NodeCert>();
  let asN3: TcpTransport;
  let n3Tls: PeerTls;
  beforeAll(async () => {
    const ca = makeCa(dir, 'cluster');
    for (const id of ['n1', 'n2', 'n3']) certs.set(id, makeNodeCert(ca, id));
    c = await TestCluster.start(3, FAST, {
      gossip: true,
      perNode: (id) => {
        const cert = certs.get(id)!;
        return ['--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-ca', cert.ca];
      },
    });
    for (const i of [0, 1, 2])
      await waitFor(`n${i + 1} sees all up`, async () => {
        const m = (await ring(c.url(i))).members;
        return m.length === 3 && m.every((x) => x.state === 'up');
      });
    // A process holding member n3's own certificate and key: what a compromised member could send.
    const n3 = certs.get('n3')!;
    n3Tls = new PeerTls({ cert: n3.cert, key: n3.key, ca: n3.ca });
    asN3 = new TcpTransport({
      self: 'n3',
      cluster: 'dynamo',
      host: '127.0.0.1',
      port: 0,
      resolve: (id) => (id === 'n1' ? `127.0.0.1:${c.nodes[0]!.peerPort}` : undefined),
      tls: n3Tls,
    });
  }, 120_000);
  afterAll(async () => {
    await asN3?.close();
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses entries a member writes about another member, and phantom members', async () => {
    const syn = (await asN3.request('n1', { op: 'gossip.syn', cluster: 'dynamo', digest: [] }, 5000)) as {
      entries: MemberEntry[];
    };
    const n2 = syn.entries.find((e) => e.id === 'n2')!;
    expect(n2.sig).toBeDefined(); // entries travel signed
    const realAddress = n2.address;
    const signer = new EntrySigner('dynamo', n3Tls);
    const forged: MemberEntry[] = [
      // n2's entry with a new address, its own signature kept: the signature no longer matches.
      { ...n2, address: '127.0.0.1:1', version: n2.version + 100 },
      // A tombstone of live n2, properly signed by n3.
      signer.seal({ ...n2, status: 'removed', version: n2.version + 1_000_000, removedBy: 'n3' }),
      // n2's entry moved and re-signed by n3.
      signer.seal({ ...n2, address: '127.0.0.1:1', version: n2.version + 200 }),
      // A phantom member, with n3's signature, and one unsigned.
      signer.seal({ ...n2, id: 'n9', address: '127.0.0.1:2', generation: 1, version: 1 }),
      { id: 'n8', address: '127.0.0.1:3', tokens: n2.tokens, status: 'up', generation: 1, version: 1 },
    ];
    for (const e of forged)
      await asN3.request('n1', { op: 'gossip.push', cluster: 'dynamo', entries: [e] }, 5000);
    // Gossip rounds pass; every node still has n2 up at its address, and no phantom.
    await new Promise((r) => setTimeout(r, 2000));
    for (const i of [0, 1, 2]) {
      const members = (await ring(c.url(i))).members;
      expect(members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
      const m2 = members.find((m) => m.id === 'n2')!;
      expect(m2.state).toBe('up');
      expect(m2.address).toBe(realAddress);
    }
    const w = await fetch(`${c.url(0)}/buckets/t/keys/k?w=all`, { method: 'PUT', body: 'still whole' });
    expect(w.status).toBe(204);
  });

  it('still takes the admin removal of a dead member, on every node', async () => {
    await c.kill(2);
    await waitFor('n1 and n2 hold n3 down', async () => {
      for (const i of [0, 1]) {
        const m = (await ring(c.url(i))).members.find((x) => x.id === 'n3');
        if (m?.state !== 'down') return false;
      }
      return true;
    });
    const removed = await fetch(`${c.url(0)}/admin/members/n3/remove`, { method: 'POST' });
    expect(removed.status).toBe(200);
    await waitFor('n2 drops n3', async () => !(await ring(c.url(1))).members.some((m) => m.id === 'n3'));
    // n2, which learnt it by gossip, still has n1 whole: ring members are n1 and n2 only.
    expect((await ring(c.url(1))).members.map((m) => m.id).sort()).toEqual(['n1', 'n2']);
  });
});
