/**
 * DynamoClient against two stub HTTP servers: a write without a context that a node refused with
 * 503 not_ready (it did nothing: it has not rejoined its cluster) is sent to another node.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DynamoClient } from '../../node/src/client/client.js';
import { QuorumNotMetError } from '../../node/src/errors.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function stub(answer: (method: string, url: string) => [number, object | undefined]) {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      const [status, body] = answer(req.method ?? 'GET', req.url ?? '/');
      res.writeHead(status, body ? { 'Content-Type': 'application/json' } : {});
      res.end(body ? JSON.stringify(body) : undefined);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

describe('DynamoClient and not_ready', () => {
  it('sends a blind write refused with not_ready to another node', async () => {
    const rejoining = await stub(() => [503, { error: 'not_ready', message: 'not yet rejoined' }]);
    const serving = await stub((method) =>
      method === 'PUT' ? [204, undefined] : [404, { error: 'not_found' }],
    );
    const client = new DynamoClient({ seeds: [rejoining.url, serving.url], routing: 'any', retries: 2 });
    try {
      for (let i = 0; i < 10; i++) await client.put('b', `k${i}`, 'v');
    } finally {
      await client.close();
    }
    expect(rejoining.hits.filter((h) => h.startsWith('PUT')).length).toBeGreaterThan(0);
    expect(serving.hits.filter((h) => h.startsWith('PUT'))).toHaveLength(10);
  });

  it('does not resend a blind write refused for its quorum (it may have been stored)', async () => {
    const quorum = await stub(() => [503, { error: 'quorum_not_met', message: 'x', needed: 2, got: 1 }]);
    const client = new DynamoClient({ seeds: [quorum.url], routing: 'any', retries: 2 });
    try {
      await expect(client.put('b', 'k', 'v')).rejects.toBeInstanceOf(QuorumNotMetError);
    } finally {
      await client.close();
    }
    expect(quorum.hits.filter((h) => h.startsWith('PUT'))).toHaveLength(1);
  });
});
