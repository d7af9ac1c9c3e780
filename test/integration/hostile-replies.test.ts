/**
 * A member that answers garbage, on real node processes: n3 of a static 3-node cluster is replaced by a
 * process that answers every peer request with a malformed reply of its op (objects that do not decode,
 * props with n = 0, hashes that are not bytes, a bad member entry). The other two keep serving with the
 * quorums they can still make, store nothing it sent, and restart.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TcpTransport } from '../../node/src/transport/tcp.js';
import { TestCluster } from './harness.js';

/** A malformed reply to each op. */
const GARBAGE: Record<string, unknown> = {
  get: { obj: Buffer.from('not msgpack') },
  put: { obj: Buffer.from('not msgpack') },
  merge: { ok: 'sure' },
  reap: { reaped: 'yes' },
  'props.set': { ok: true },
  'props.all': {
    props: [
      { bucket: 'safe', props: { n: 0, r: 1, w: 1, conflict: 'siblings', ttl: 0 }, ts: Date.now() + 60_000 },
    ],
  },
  info: { id: 7 },
  'ae.root': { root: 'not bytes' },
  'ae.children': { children: 'no' },
  'ae.keys': { keys: [['no separator', 'x']] },
};

describe('hostile peer replies', () => {
  let c: TestCluster | undefined;
  let fake: TcpTransport | undefined;
  afterEach(async () => {
    await fake?.close();
    await c?.stop();
    c = fake = undefined;
  });

  it('are refused: the others serve what their quorums allow, store nothing of it, and restart', async () => {
    c = await TestCluster.start(3, [
      ...['--props-sync-interval-ms', '200', '--anti-entropy-interval-ms', '200'],
      ...['--request-timeout-ms', '1000'],
    ]);
    const put = (i: number, key: string, q = '') =>
      fetch(`${c!.url(i)}/buckets/safe/keys/${key}${q}`, { method: 'PUT', body: key });
    expect((await put(0, 'before', '?w=all')).status).toBe(204);
    await c.kill(2);
    fake = new TcpTransport({
      self: 'n3',
      cluster: 'dynamo',
      host: '127.0.0.1',
      port: c.nodes[2]!.peerPort,
      resolve: () => undefined,
    });
    const asked = new Set<string>();
    await fake.listen(async (_from, body) => {
      const op = (body as { op: string }).op;
      asked.add(op);
      return GARBAGE[op] ?? { garbage: true };
    });
    // Writes and reads go on with n1 and n2; the garbage costs only the quorums that need n3.
    for (let i = 0; i < 20; i++) expect((await put(i % 2, `k${i}`)).status).toBe(204);
    expect((await fetch(`${c.url(0)}/buckets/safe/keys/before?r=2`)).status).toBe(200);
    expect((await fetch(`${c.url(1)}/buckets/safe/keys/before?r=all`)).status).toBe(503);
    // Props sync and anti-entropy rounds have asked the fake meanwhile.
    await new Promise((r) => setTimeout(r, 2000));
    expect([...asked]).toEqual(expect.arrayContaining(['props.all', 'ae.root', 'merge']));
    for (const i of [0, 1]) {
      const props = (await (await fetch(`${c.url(i)}/buckets/safe/props`)).json()) as { n: number };
      expect(props.n).toBe(3);
    }
    // Both restart, and serve every acknowledged write.
    for (const i of [0, 1]) {
      await c.kill(i, 'SIGTERM');
      await c.startNode(i);
    }
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${c.url(i % 2)}/buckets/safe/keys/k${i}?r=2`);
      expect(await res.text()).toBe(`k${i}`);
    }
  }, 90_000);
});
