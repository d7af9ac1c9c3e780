/**
 * Join and decommission with real node processes: data streams in to a new node and out of a leaving
 * one while a writer runs, and no acknowledged write is lost.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { AckChecker } from './ack-checker.js';
import { CLI, metric, TestCluster, waitFor } from './harness.js';

const FAST = ['--gossip-interval-ms', '200', '--hint-delivery-interval-ms', '200'];
const VALUE_BYTES = 1024;

interface Status {
  state: string;
  stream: null | {
    kind: string;
    rangesTotal: number;
    rangesPending: number;
    keys: number;
    bytes: number;
    bytesLeft: number;
    finishedAt: string | null;
    peers: Array<{ id: string; scanned: number; done: boolean }>;
  };
}

const status = async (url: string): Promise<Status> =>
  (await fetch(`${url}/admin/status`)).json() as Promise<Status>;

/** Writes count keys of VALUE_BYTES through url, 16 at a time. */
async function preload(checker: AckChecker, url: string, count: number): Promise<void> {
  const pad = 'p'.repeat(VALUE_BYTES);
  for (let i = 0; i < count; i += 16) {
    await Promise.all(
      Array.from({ length: Math.min(16, count - i) }, (_, j) =>
        checker.write(url, `pre-${i + j}`, `${i + j}${pad}`),
      ),
    );
  }
  expect(checker.size).toBe(count);
}

const mibPerSecond = (bytes: number, ms: number) => (bytes / 1024 / 1024 / (ms / 1000)).toFixed(1);

describe('join and decommission', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('adds a 4th node and decommissions another while a writer runs; every acknowledged write survives', async () => {
    c = await TestCluster.start(3, [...FAST, '--stream-mib-per-second', '0'], { gossip: true });
    const checker = new AckChecker('moves');
    await preload(checker, c.url(0), 3000);
    // With 3 members and n = 3, a leave would under-replicate: refused with a clear reason.
    const early = await fetch(`${c.url(1)}/admin/decommission`, { method: 'POST' });
    expect(early.status).toBe(409);
    expect(((await early.json()) as { error: string }).error).toBe('would_underreplicate');

    const writeTo = [c.url(0), c.url(2)];
    const writer = checker.runWriter(() => writeTo, 'live');
    const joinStart = Date.now();
    const n4 = await c.addNode();
    await waitFor('n4 up', async () => (await status(c!.url(n4))).state === 'up', 60_000);
    const joinMs = Date.now() - joinStart;
    const joined = (await status(c.url(n4))).stream!;
    expect(joined).toMatchObject({ kind: 'join', rangesPending: 0 });
    expect(joined.finishedAt).not.toBeNull();
    const bytesIn = await metric(c.url(n4), /^dynamo_stream_bytes_total\{.*direction="in"/);
    expect(bytesIn).toBe(joined.bytes);
    // The CLI shows the same: state, ranges and bytes.
    const cli = execFileSync(process.execPath, [CLI, 'status', '--endpoint', c.url(n4)]).toString();
    expect(cli).toContain('node n4 (cluster dynamo): up');
    expect(cli).toMatch(
      new RegExp(
        `join \\((displaced|all)\\), finished .*: 0 of ${joined.rangesTotal} ranges left, ${joined.keys} keys`,
      ),
    );
    // Every member serves the new node once it is up.
    for (const i of [0, 1, 2]) {
      await waitFor(`n${i + 1} sees n4 up`, async () => {
        const ring = (await (await fetch(`${c!.url(i)}/admin/ring`)).json()) as {
          members: Array<{ id: string; state: string }>;
        };
        return ring.members.find((m) => m.id === 'n4')?.state === 'up';
      });
    }

    const leaveStart = Date.now();
    const started = await fetch(`${c.url(1)}/admin/decommission`, { method: 'POST' });
    expect(started.status).toBe(202);
    expect(((await started.json()) as Status).state).toMatch(/leaving|left/);
    await waitFor('n2 left', async () => (await status(c!.url(1))).state === 'left', 60_000);
    const leaveMs = Date.now() - leaveStart;
    const left = (await status(c.url(1))).stream!;
    expect(left).toMatchObject({ kind: 'decommission', rangesPending: 0 });
    expect((await fetch(`${c.url(1)}/ready`)).status).toBe(503);
    const attempted = await writer.stop();
    console.log(
      `streaming: join moved ${joined.keys} keys / ${(joined.bytes / 1e6).toFixed(1)} MB in ${joinMs} ms ` +
        `(${mibPerSecond(joined.bytes, joinMs)} MiB/s wall, settle included); decommission moved ${left.keys} keys / ` +
        `${(left.bytes / 1e6).toFixed(1)} MB in ${leaveMs} ms (${mibPerSecond(left.bytes, leaveMs)} MiB/s); ` +
        `writer: ${checker.size} acknowledged of ${attempted + 3000} attempted`,
    );

    // The remaining members agree on the ring: n1, n3 and n4, each holding every key (n = 3).
    for (const i of [0, 2, n4]) {
      await waitFor(`n${i + 1} drops n2`, async () => {
        const ring = (await (await fetch(`${c!.url(i)}/admin/ring`)).json()) as {
          members: Array<{ id: string; state: string; replicaOwnership: number }>;
        };
        const ids = ring.members.map((m) => m.id).sort();
        return (
          ids.join() === 'n1,n3,n4' &&
          ring.members.every((m) => m.state === 'up' && Math.abs(m.replicaOwnership - 1) < 1e-9)
        );
      });
    }
    const pending = [0, 2, n4].map((i) => c!.url(i));
    await waitFor(
      'hints drained',
      async () => (await metric(pending, /^dynamo_hints_pending\{/)) === 0,
      30_000,
    );
    expect(await checker.verify(c.url(0))).toEqual([]);
    // The joined node holds every key itself: read from it alone, its peers stopped.
    await c.kill(0);
    await c.kill(2);
    expect(await checker.verify(c.url(n4), '?r=1')).toEqual([]);
    // A node that has left refuses to start again on its old data.
    await c.kill(1);
    await expect(c.startNode(1)).rejects.toThrow(/was decommissioned/);
  }, 180_000);

  it('resumes a join interrupted by kill -9 from where it stopped', async () => {
    // 1 MiB/s: the join takes a few seconds, long enough to be interrupted. With 2 members and n = 3
    // the new node replicates every key, so it alone must be able to serve them all at the end.
    c = await TestCluster.start(2, [...FAST, '--stream-mib-per-second', '1'], { gossip: true });
    const checker = new AckChecker('resume');
    await preload(checker, c.url(0), 4000);
    const n4 = await c.addNode();
    await waitFor(
      'n4 streaming',
      async () => {
        const s = (await status(c!.url(n4))).stream;
        return s !== null && s.keys > 0 && s.rangesPending > 0;
      },
      30_000,
    );
    await c.kill(n4);
    const before = (await status(c.url(0))).state;
    expect(before).toBe('up');
    await c.startNode(n4, false);
    // The restarted node picks up its saved progress: its sources' cursors are not back at the start.
    const resumed = (await status(c.url(n4))).stream;
    expect(resumed?.peers.some((p) => p.scanned > 0)).toBe(true);
    await waitFor('n4 up', async () => (await status(c!.url(n4))).state === 'up', 60_000);
    const done = (await status(c.url(n4))).stream!;
    const bytesThisRun = await metric(c.url(n4), /^dynamo_stream_bytes_total\{.*direction="in"/);
    // Bytes streamed by the second run are only the rest of the join, not all of it again.
    expect(bytesThisRun).toBeGreaterThan(0);
    expect(bytesThisRun).toBeLessThan(done.bytes);
    await c.kill(0);
    await c.kill(1);
    expect(await checker.verify(c.url(n4), '?r=1')).toEqual([]);
  }, 180_000);
});
