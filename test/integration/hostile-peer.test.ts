/**
 * Hostile peer payloads on real node processes: each message that once stored something that broke
 * every later read or restart is refused with a typed error, and afterwards every node still restarts
 * and serves its data. The cluster runs without TLS, so the raw client below says hello with the
 * cluster's name: the schema checks hold for any peer, a member with a valid certificate included.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeObject } from '../../node/src/storage/codec.js';
import { encodeFrame, type Frame, FrameDecoder, FrameKind } from '../../node/src/transport/frame.js';
import { TestCluster } from './harness.js';

/** A raw peer connection: hello, then one request at a time, resolving with each answer frame. */
async function rawPeer(port: number) {
  const socket: Socket = await new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
  });
  const decoder = new FrameDecoder();
  const waiting: Array<(f: Frame) => void> = [];
  socket.on('data', (chunk) => {
    for (const frame of decoder.push(chunk)) waiting.shift()?.(frame);
  });
  const send = (kind: FrameKind, id: number, payload: unknown) =>
    new Promise<Frame>((resolve) => {
      waiting.push(resolve);
      for (const part of encodeFrame(kind, id, payload)) socket.write(part);
    });
  const hello = await send(FrameKind.Hello, 0, { cluster: 'dynamo', node: 'intruder', protocol: 1 });
  expect(hello.kind).toBe(FrameKind.HelloOk);
  let id = 1;
  return {
    request: (payload: unknown) => send(FrameKind.Request, id++, payload),
    close: () => socket.destroy(),
  };
}

const sib = (over: Record<string, unknown> = {}) => ({
  value: Buffer.from('evil'),
  contentType: 'text/plain',
  lastModified: Date.now(),
  deleted: false,
  expiresAt: 0,
  ...over,
});
const obj = (s: Record<string, unknown>, counter = 1) =>
  encodeObject({
    entries: [{ id: 'intruder~0~0', counter, time: Date.now(), values: [s as never] }],
    anonymous: [],
  });

describe('hostile peer payloads', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('are refused with invalid_message, and every node still restarts and serves', async () => {
    c = await TestCluster.start(3);
    expect(
      (await fetch(`${c.url(0)}/buckets/safe/keys/k?w=all`, { method: 'PUT', body: 'kept' })).status,
    ).toBe(204);
    const peer = await rawPeer(c.nodes[1]!.peerPort);
    const bad = [
      {
        op: 'props.set',
        props: { bucket: 'safe', props: { n: 0, r: 1, w: 1, conflict: 'siblings', ttl: 0 }, ts: Date.now() },
      },
      {
        op: 'props.set',
        props: { bucket: 'safe', props: { n: 3, r: 2, w: 2, conflict: 'siblings', ttl: 1 }, ts: 8e15 },
      },
      { op: 'put', b: 'safe', k: 'k', ctx: [], sib: {}, lww: false },
      { op: 'put', b: 'safe', k: 'k', ctx: [], sib: sib({ expiresAt: 9e15 }), lww: false },
      { op: 'put', b: 'safe', k: 'k', ctx: [], sib: sib({ contentType: 'text/plain\r\nX: 1' }), lww: false },
      { op: 'merge', b: 'safe', k: 'k', obj: obj(sib({ contentType: 'a\r\nb' })), lww: false },
      { op: 'merge', b: 'safe', k: 'k', obj: obj(sib(), 2 ** 53 - 1), lww: false },
      { op: 'merge', b: 'safe', k: 'k', obj: Buffer.from('not msgpack'), lww: false },
      { op: 'stream.push', entries: [['safe', 'k', obj({})]] },
      { op: 'gossip.push', cluster: 'dynamo', entries: [{ id: 'n1', generation: 2 ** 60 }] },
      { op: 'no.such.op' },
    ];
    for (const payload of bad) {
      const answer = await peer.request(payload);
      expect(answer.kind, JSON.stringify(payload).slice(0, 80)).toBe(FrameKind.ErrorReply);
      expect(['invalid_message', 'unknown_op']).toContain((answer.payload as { code: string }).code);
    }
    peer.close();
    // Every node restarts, and the key reads back everywhere with its value and the bucket's props.
    for (const i of [0, 1, 2]) {
      await c.kill(i);
      await c.startNode(i);
    }
    for (const i of [0, 1, 2]) {
      const read = await fetch(`${c.url(i)}/buckets/safe/keys/k?r=all`);
      expect(read.status).toBe(200);
      expect(await read.text()).toBe('kept');
      const props = (await (await fetch(`${c.url(i)}/buckets/safe/props`)).json()) as {
        n: number;
        ttl: number;
      };
      expect(props).toMatchObject({ n: 3, ttl: 0 });
    }
  });
});
