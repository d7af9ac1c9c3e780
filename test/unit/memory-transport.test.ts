import { afterEach, describe, expect, it } from 'vitest';
import {
  InvalidRequestError,
  PeerUnavailableError,
  RemoteError,
  RequestTimeoutError,
} from '../../node/src/errors.js';
import { InMemoryNetwork } from '../../node/src/transport/memory.js';
import type { Transport } from '../../node/src/transport/transport.js';

const open: Transport[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

/** A network with node `a` (client) and node `b` (server running `handler`). */
async function network(handler: (from: string, body: unknown) => Promise<unknown>) {
  const net = new InMemoryNetwork();
  const a = net.transport('a');
  const b = net.transport('b');
  open.push(a, b);
  await a.listen(async () => null);
  await b.listen(handler);
  return { net, a, b };
}

describe('InMemoryNetwork', () => {
  it('delivers a request to the peer handler with the sender id and returns its reply', async () => {
    const { a, net } = await network(async (from, body) => ({ from, body }));
    await expect(a.request('b', { op: 'get' }, 1000)).resolves.toEqual({ from: 'a', body: { op: 'get' } });
    expect(net.log).toEqual([{ from: 'a', to: 'b', body: { op: 'get' } }]);
  });

  it('refuses requests to a down node at once with PeerUnavailableError, and delivers again once it is up', async () => {
    let handled = 0;
    const { a, net } = await network(async () => ++handled);
    net.setDown('b', true);
    const started = Date.now();
    await expect(a.request('b', {}, 5000)).rejects.toBeInstanceOf(PeerUnavailableError);
    expect(Date.now() - started).toBeLessThan(100);
    expect(handled).toBe(0);
    net.setDown('b', false);
    await expect(a.request('b', {}, 1000)).resolves.toBe(1);
  });

  it('refuses requests to a node that is not listening or has closed', async () => {
    const { a, b } = await network(async () => 'ok');
    await expect(a.request('nobody', {}, 1000)).rejects.toBeInstanceOf(PeerUnavailableError);
    await b.close();
    await expect(a.request('b', {}, 1000)).rejects.toBeInstanceOf(PeerUnavailableError);
  });

  it('fails a request in flight with PeerUnavailableError when its node goes down during the delay', async () => {
    let handled = 0;
    const { a, net } = await network(async () => ++handled);
    net.setDelay('b', 50);
    const pending = a.request('b', {}, 1000);
    net.setDown('b', true);
    await expect(pending).rejects.toBeInstanceOf(PeerUnavailableError);
    expect(handled).toBe(0);
  });

  it('times out a request to a node delayed longer than the timeout', async () => {
    const { a, net } = await network(async () => 'late');
    net.setDelay('b', 300);
    const started = Date.now();
    const err = await a.request('b', {}, 50).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestTimeoutError);
    expect((err as RequestTimeoutError).peer).toBe('b');
    expect(Date.now() - started).toBeLessThan(250);
  });

  it('answers a request to a node delayed less than the timeout, after the delay', async () => {
    const { a, net } = await network(async () => 'slow but fine');
    net.setDelay('b', 60);
    const started = Date.now();
    await expect(a.request('b', {}, 1000)).resolves.toBe('slow but fine');
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
  });

  it('never lets a node with Infinity delay answer: the caller gets RequestTimeoutError at its timeout', async () => {
    let handled = 0;
    const { a, net } = await network(async () => ++handled);
    net.setDelay('b', Number.POSITIVE_INFINITY);
    const started = Date.now();
    await expect(a.request('b', {}, 80)).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(70);
    expect(handled).toBe(0);
  });

  it('turns a thrown DynamoError into RemoteError with its code, and anything else into code internal', async () => {
    const { a } = await network(async (_from, body) => {
      if (body === 'typed') throw new InvalidRequestError('x_code', 'typed failure');
      throw new Error('plain failure');
    });
    const typed = await a.request('b', 'typed', 1000).catch((e: unknown) => e);
    expect(typed).toBeInstanceOf(RemoteError);
    expect((typed as RemoteError).code).toBe('x_code');
    const plain = await a.request('b', 'plain', 1000).catch((e: unknown) => e);
    expect(plain).toBeInstanceOf(RemoteError);
    expect((plain as RemoteError).code).toBe('internal');
  });

  it('hands the receiver a copy of the body: mutating it does not change the sender object', async () => {
    const { a } = await network(async (_from, body) => {
      const b = body as { list: number[]; nested: { x: number }; buf: Buffer };
      b.list.push(99);
      b.nested.x = -1;
      b.buf[0] = 0xff;
      return b;
    });
    const sent = { list: [1, 2], nested: { x: 1 }, buf: Buffer.from([1, 2, 3]) };
    const reply = (await a.request('b', sent, 1000)) as typeof sent;
    expect(sent).toEqual({ list: [1, 2], nested: { x: 1 }, buf: Buffer.from([1, 2, 3]) });
    expect(reply.list).toEqual([1, 2, 99]);
    expect(reply.nested.x).toBe(-1);
    expect(reply.buf[0]).toBe(0xff);
  });

  it('hands the sender a copy of the reply: mutating it does not change the handler object', async () => {
    const kept = { count: 1, items: ['x'] };
    const { a } = await network(async () => kept);
    const reply = (await a.request('b', {}, 1000)) as typeof kept;
    reply.count = 5;
    reply.items.push('y');
    expect(kept).toEqual({ count: 1, items: ['x'] });
  });
});
