/**
 * The HTTP port against slow, broken and aborted clients, on a real node process: every refusal is a
 * JSON error, a slow client is cut off, an aborted upload is no server error, connections are capped.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric, TestCluster, waitFor } from './harness.js';

/** Sends raw bytes on a new connection; resolves with all the node sent back once it closed. */
function exchange(port: number, bytes: string | Buffer, opts: { end?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(bytes);
      if (opts.end) socket.end();
    });
    let out = '';
    socket.on('data', (d) => {
      out += d;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(out));
  });
}

const jsonError = (reply: string) => {
  const [head, body] = reply.split('\r\n\r\n');
  expect(head).toMatch(/content-type: application\/json/i);
  return {
    status: Number(head!.split(' ')[1]),
    ...(JSON.parse(body!) as { error: string; message: string }),
  };
};

describe('HTTP hygiene', () => {
  let c: TestCluster;
  let port: number;
  beforeAll(async () => {
    const flags = ['--http-request-timeout-ms', '1500', '--http-max-connections', '30'];
    c = await TestCluster.start(1, [...flags, '--default-n', '1', '--default-r', '1', '--default-w', '1']);
    port = c.nodes[0]!.httpPort;
  });
  afterAll(async () => {
    await c.stop();
  });

  it('answers a malformed request and oversized headers with JSON errors (400, 431)', async () => {
    expect(jsonError(await exchange(port, 'NONSENSE\r\n\r\n'))).toMatchObject({
      status: 400,
      error: 'bad_request',
    });
    const huge = `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`;
    expect(jsonError(await exchange(port, huge))).toMatchObject({ status: 431, error: 'headers_too_large' });
  });

  it('cuts off a client that sends its body too slowly, with 408 in JSON', async () => {
    const started = Date.now();
    const reply = await exchange(
      port,
      'PUT /buckets/h/keys/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab',
    );
    expect(jsonError(reply)).toMatchObject({ status: 408, error: 'request_timeout' });
    expect(Date.now() - started).toBeLessThan(5000);
    // Nothing was stored from the partial body.
    expect((await fetch(`${c.url(0)}/buckets/h/keys/slow`)).status).toBe(404);
  });

  it('counts an aborted upload as the client’s (499), never as a 500', async () => {
    await exchange(
      port,
      'PUT /buckets/h/keys/aborted HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789',
      {
        end: true,
      },
    );
    await waitFor(
      'the abort counted',
      async () => (await metric(c.url(0), /^dynamo_requests_total\{.*code="499"/)) >= 1,
    );
    expect(await metric(c.url(0), /^dynamo_requests_total\{.*code="500"/)).toBe(0);
    expect(c.nodes[0]!.output.join('')).not.toMatch(/"level":"error"/);
    expect((await fetch(`${c.url(0)}/buckets/h/keys/aborted`)).status).toBe(404);
  });

  it('refuses connections beyond --http-max-connections, and serves again once they close', async () => {
    const sockets: Socket[] = await Promise.all(
      Array.from(
        { length: 30 },
        () =>
          new Promise<Socket>((resolve) => {
            const s = connect(port, '127.0.0.1', () => resolve(s));
            s.on('error', () => undefined);
          }),
      ),
    );
    await new Promise((r) => setTimeout(r, 200));
    const refused = await exchange(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(refused).toBe('');
    for (const s of sockets) s.destroy();
    await waitFor('served again', async () => (await fetch(`${c.url(0)}/health`)).ok);
  });
});
