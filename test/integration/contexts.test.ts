/**
 * Forgery-proof contexts on real node processes: a context is accepted only for the key it was read
 * from, issued by this cluster; a forged, foreign or overflowing one gets 400 invalid_context and the
 * key keeps every value.
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derivedContextSecret, encodeContext } from '../../node/src/version/index.js';
import { readValues, TestCluster } from './harness.js';

const put = (url: string, key: string, body: string, context?: string) =>
  fetch(`${url}/buckets/ctx/keys/${key}?w=all`, {
    method: 'PUT',
    body,
    headers: context ? { 'X-Dynamo-Context': context } : {},
  });

describe('contexts', () => {
  let c: TestCluster;
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-secret-'));
  beforeAll(async () => {
    writeFileSync(join(dir, 'secret'), 'a cluster secret of some length\n');
    c = await TestCluster.start(3, ['--context-secret-file', join(dir, 'secret')]);
    // Two concurrent values on k1 (siblings), one on k2.
    for (const v of ['one', 'two']) expect((await put(c.url(0), 'k1', v)).status).toBe(204);
    expect((await put(c.url(0), 'k2', 'other')).status).toBe(204);
  });
  afterAll(async () => {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const expectRefused = async (context: string) => {
    const res = await put(c.url(1), 'k1', 'intruder', context);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_context');
    const read = await readValues(c.url(2), 'ctx', 'k1', '?r=all');
    expect(read.values.sort()).toEqual(['one', 'two']);
  };

  it('refuses the context of another key, which would discard siblings the writer never read', async () => {
    const other = (await fetch(`${c.url(0)}/buckets/ctx/keys/k2`)).headers.get('x-dynamo-context')!;
    await expectRefused(other);
  });

  it('refuses a forged context, and one made under another secret', async () => {
    const read = await fetch(`${c.url(0)}/buckets/ctx/keys/k1`);
    const real = read.headers.get('x-dynamo-context')!;
    await expectRefused(`${real.slice(0, -2)}AA`);
    // Whoever guesses the cluster name can make contexts under the derived secret: not this cluster's.
    const binding = { secret: derivedContextSecret('dynamo'), bucket: 'ctx', key: 'k1' };
    await expectRefused(encodeContext([['n1~0~0', 1]], binding));
  });

  it('refuses a counter of 2^53 - 1 even under a valid MAC (it once bricked a key on every node)', async () => {
    // A cluster without a secret file: its secret derives from the cluster name, so anyone can MAC.
    const open = await TestCluster.start(1, ['--default-n', '1', '--default-r', '1', '--default-w', '1']);
    try {
      const url = `${open.url(0)}/buckets/ctx/keys/k`;
      expect((await fetch(url, { method: 'PUT', body: 'v' })).status).toBe(204);
      const varint: number[] = [];
      for (let rest = 2 ** 53 - 1; ; rest = Math.floor(rest / 0x80)) {
        if (rest < 0x80) {
          varint.push(rest);
          break;
        }
        varint.push((rest % 0x80) | 0x80);
      }
      const payload = Buffer.from([2, 1, 1, 0x61, ...varint]);
      const mac = createHmac('sha256', derivedContextSecret('dynamo'))
        .update('ctx\u0000k\u0000')
        .update(payload)
        .digest();
      const forged = Buffer.concat([payload, mac.subarray(0, 16)]).toString('base64url');
      const res = await fetch(url, { method: 'PUT', body: 'x', headers: { 'X-Dynamo-Context': forged } });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('invalid_context');
      // A well-formed context of the same MAC passes: the refusal is the counter's.
      const fine = encodeContext([['a', 5]], {
        secret: derivedContextSecret('dynamo'),
        bucket: 'ctx',
        key: 'k',
      });
      expect(
        (await fetch(url, { method: 'PUT', body: 'y', headers: { 'X-Dynamo-Context': fine } })).status,
      ).toBe(204);
      expect((await fetch(url)).status).toBe(300);
    } finally {
      await open.stop();
    }
  });

  it('accepts the context read from the key, and the write supersedes both siblings', async () => {
    const read = await fetch(`${c.url(0)}/buckets/ctx/keys/k1?r=all`);
    expect(read.status).toBe(300);
    const res = await put(c.url(1), 'k1', 'merged', read.headers.get('x-dynamo-context')!);
    expect(res.status).toBe(204);
    expect((await readValues(c.url(2), 'ctx', 'k1', '?r=all')).values).toEqual(['merged']);
  });
});
