/**
 * Client authentication with roles on a real node process: no token gets 401, a token whose role does
 * not allow the call 403 (both JSON), each role exactly what it should, and a rotated tokens file takes
 * effect without a restart.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoClient } from '../../node/src/client/index.js';
import { TestCluster, waitFor } from './harness.js';

const TOKENS = { read: 'r'.repeat(20), write: 'w'.repeat(20), admin: 'a'.repeat(20) };
const tokensFile = (tokens: Record<string, string>) =>
  `# test tokens\n${Object.entries(tokens)
    .map(([role, token]) => `${role} ${token}`)
    .join('\n')}\n`;

describe('client authentication and roles', () => {
  let c: TestCluster;
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-auth-'));
  const file = join(dir, 'tokens');
  beforeAll(async () => {
    writeFileSync(file, tokensFile(TOKENS));
    c = await TestCluster.start(1, [
      '--auth-tokens-file',
      file,
      '--default-n',
      '1',
      '--default-r',
      '1',
      '--default-w',
      '1',
    ]);
  });
  afterAll(async () => {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = (path: string, method = 'GET', token?: string, body?: string) =>
    fetch(`${c.url(0)}${path}`, {
      method,
      ...(body !== undefined ? { body } : {}),
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });

  it('answers a call without a token, or with an unknown one, 401 in JSON', async () => {
    for (const [path, method] of [
      ['/buckets/a/keys/k', 'GET'],
      ['/buckets/a/keys/k', 'PUT'],
      ['/buckets/a/props', 'PUT'],
      ['/admin/decommission', 'POST'],
      ['/admin/members/n2/remove', 'POST'],
      ['/admin/ring', 'GET'],
    ] as const) {
      for (const token of [undefined, 'not-a-token-of-ours-at-all']) {
        const res = await call(path, method, token, method === 'PUT' ? '{}' : undefined);
        expect(res.status, `${method} ${path}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(((await res.json()) as { error: string }).error).toBe('unauthenticated');
      }
    }
    // Probes and scrapers need no token.
    for (const path of ['/health', '/ready', '/metrics']) expect((await call(path)).status).toBe(200);
  });

  it('lets each role do what it allows and refuses the rest with 403', async () => {
    expect((await call('/buckets/a/keys/k', 'PUT', TOKENS.read, 'x')).status).toBe(403);
    expect((await call('/buckets/a/keys/k', 'GET', TOKENS.read)).status).toBe(404);
    expect((await call('/admin/ring', 'GET', TOKENS.read)).status).toBe(200);
    expect((await call('/buckets/a/keys/k', 'PUT', TOKENS.write, 'x')).status).toBe(204);
    expect((await call('/buckets/a/keys/k', 'DELETE', TOKENS.write)).status).toBe(204);
    const props = await call('/buckets/a/props', 'PUT', TOKENS.write, '{"ttl": 1}');
    expect(props.status).toBe(403);
    expect(((await props.json()) as { error: string }).error).toBe('forbidden');
    expect((await call('/admin/cleanup', 'POST', TOKENS.write)).status).toBe(403);
    expect((await call('/admin/decommission?force=true', 'POST', TOKENS.write)).status).toBe(403);
    expect((await call('/buckets/a/props', 'PUT', TOKENS.admin, '{"ttl": 60}')).status).toBe(200);
    // The client library and its token.
    const client = new DynamoClient({ seeds: [c.url(0)], token: TOKENS.write });
    try {
      await client.put('a', 'via-client', Buffer.from('v'));
      expect('value' in (await client.get('a', 'via-client'))).toBe(true);
    } finally {
      await client.close();
    }
  });

  it('takes a rotated tokens file without a restart', async () => {
    const rotated = { ...TOKENS, write: 'n'.repeat(24) };
    writeFileSync(file, tokensFile(rotated));
    await waitFor(
      'the new write token works',
      async () => (await call('/buckets/a/keys/r', 'PUT', rotated.write, 'x')).status === 204,
      10_000,
    );
    expect((await call('/buckets/a/keys/r', 'PUT', TOKENS.write, 'x')).status).toBe(401);
    // A broken file keeps the last good tokens.
    writeFileSync(file, 'superuser everything\n');
    await new Promise((r) => setTimeout(r, 2500));
    expect((await call('/buckets/a/keys/r', 'PUT', rotated.write, 'y')).status).toBe(204);
  });
});
