/**
 * HTTPS on the client port of a real node: the client library and the CLI reach it with the CA, plain
 * HTTP gets nothing, and a client that does not trust the CA is refused before sending anything.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoClient } from '../../node/src/client/index.js';
import { makeCa, makeNodeCert, type NodeCert } from '../support/certs.js';
import { CLI, freePortRange, waitFor } from './harness.js';

describe('HTTPS on the client port', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dynamo-https-'));
  let cert: NodeCert;
  let proc: ChildProcess;
  let url: string;
  beforeAll(async () => {
    cert = makeNodeCert(makeCa(dir, 'clients'), 'localhost');
    const port = await freePortRange(2);
    url = `https://127.0.0.1:${port}`;
    const args = [
      CLI,
      'node',
      '--node-id',
      'n1',
      '--data-dir',
      join(dir, 'data'),
      '--http-host',
      '127.0.0.1',
    ];
    args.push('--http-port', String(port), '--peer-host', '127.0.0.1', '--peer-port', String(port + 1));
    args.push('--http-tls-cert', cert.cert, '--http-tls-key', cert.key, '--log-level', 'warn');
    args.push('--default-n', '1', '--default-r', '1', '--default-w', '1');
    proc = spawn(process.execPath, args, { stdio: 'ignore' });
    const trusting = new Agent({ connect: { ca: readFileSync(cert.ca) } });
    await waitFor(
      'https node ready',
      async () => {
        try {
          return (await undiciFetch(`${url}/ready`, { dispatcher: trusting })).ok;
        } catch {
          return false;
        }
      },
      15_000,
    );
  });
  afterAll(() => {
    proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves DynamoClient and the CLI given the CA, and nothing over plain HTTP or to a client that does not trust it', async () => {
    const client = new DynamoClient({ seeds: [url], ca: readFileSync(cert.ca) });
    try {
      await client.put('s', 'k', Buffer.from('secret'));
      const got = await client.get('s', 'k');
      expect('value' in got && got.value.toString()).toBe('secret');
    } finally {
      await client.close();
    }
    const { stdout } = await promisify(execFile)(process.execPath, [
      CLI,
      'get',
      's',
      'k',
      '--endpoint',
      url,
      '--ca',
      cert.ca,
    ]);
    expect(stdout.trim()).toBe('secret');
    await expect(fetch(`${url}/buckets/s/keys/k`)).rejects.toThrow(); // the CA is not trusted
    await expect(fetch(`${url.replace('https:', 'http:')}/buckets/s/keys/k`)).rejects.toThrow();
  });
});
