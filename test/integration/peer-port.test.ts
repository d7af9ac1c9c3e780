/**
 * The peer port under hostile connections, on a real node process: a 64 MiB frame before any hello and
 * a thousand idle connections must leave its memory within a few MB and the node serving.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TestCluster } from './harness.js';

/** Resident set of a process, in bytes. */
function rss(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) * 1024;
}

const open = (port: number) =>
  new Promise<Socket>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', () => resolve(socket));
  });
const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

describe('the peer port under hostile connections', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('a 64 MiB frame before the hello and 1,000 idle connections leave RSS within a few MB', async () => {
    c = await TestCluster.start(1, ['--default-n', '1', '--default-r', '1', '--default-w', '1']);
    const node = c.nodes[0]!;
    const pid = node.proc!.pid!;
    const put = async (k: string) =>
      (await fetch(`${node.url}/buckets/pp/keys/${k}`, { method: 'PUT', body: k })).status;
    expect(await put('before')).toBe(204);
    const before = rss(pid);

    // One frame announcing 64 MiB, then as much of it as the node takes.
    const big = await open(node.peerPort);
    const header = Buffer.alloc(9);
    header.writeUInt32BE(64 * 1024 * 1024, 0);
    big.write(header);
    const chunk = Buffer.alloc(1024 * 1024);
    let sent = 0;
    while (!big.destroyed && sent < 64 * 1024 * 1024) {
      if (!big.write(chunk)) await new Promise((r) => big.once('drain', r).once('close', r));
      sent += chunk.length;
    }
    await closed(big);

    // A thousand connections that never say hello.
    const idle = await Promise.all(Array.from({ length: 1000 }, () => open(node.peerPort)));
    expect(await put('during')).toBe(204);
    const peak = rss(pid);
    // All closed by the node: refused beyond the handshake cap, or after the handshake timeout (5 s).
    await Promise.all(idle.map(closed));
    expect(await put('after')).toBe(204);
    const after = rss(pid);
    console.log(
      `peer port: ${(sent / 2 ** 20).toFixed(0)} MiB of the 64 MiB frame sent before the close; RSS ${(before / 2 ** 20).toFixed(1)} MB before, ${(peak / 2 ** 20).toFixed(1)} MB with 1,000 connections, ${(after / 2 ** 20).toFixed(1)} MB after`,
    );
    expect(peak - before).toBeLessThan(16 * 2 ** 20);
    expect(after - before).toBeLessThan(16 * 2 ** 20);
  }, 30_000);
});
