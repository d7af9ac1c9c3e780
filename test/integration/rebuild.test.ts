/**
 * A wiped node is rebuilt before it serves, under gossip and under static membership: killed -9, its
 * data directory deleted and restarted on the same id, it must hold every key it replicates the moment
 * it answers /ready, and it must coordinate no client request before then.
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { metric, TestCluster, waitFor } from './harness.js';

const KEYS = Array.from({ length: 200 }, (_, i) => `k${i}`);

interface RingView {
  members: Array<{ id: string; tokens: string[] }>;
}
const ringOf = async (url: string) =>
  ((await (await fetch(`${url}/admin/ring?tokens=true`)).json()) as RingView).members;
const statusOf = async (url: string) =>
  (await (await fetch(`${url}/admin/status`)).json()) as {
    state: string;
    stream: { mode: string | null; keys: number } | null;
    rebuild: { state: string; keys: number; sources: string[] } | null;
  };

async function load(c: TestCluster): Promise<void> {
  for (const k of KEYS) {
    const res = await fetch(`${c.url(0)}/buckets/rb/keys/${k}?w=all`, { method: 'PUT', body: `v-${k}` });
    expect(res.status).toBe(204);
  }
}

/** Kills node i, deletes its data, restarts it and resolves once it answers /health (not /ready). */
async function wipeAndRestart(c: TestCluster, i: number): Promise<void> {
  await c.kill(i);
  rmSync(c.nodes[i]!.dataDir, { recursive: true, force: true });
  await c.startNode(i, false);
}

/**
 * Polls node i until it is ready, recording every answer its KV API gave meanwhile; once ready, it must
 * hold every key (n=3 on 3 nodes) and serve each.
 */
async function expectRebuiltBeforeServing(c: TestCluster, i: number): Promise<void> {
  const answers = new Set<number>();
  await waitFor(
    'wiped node ready',
    async () => {
      if ((await fetch(`${c.url(i)}/ready`)).ok) return true;
      answers.add((await fetch(`${c.url(i)}/buckets/rb/keys/k1`)).status);
      return false;
    },
    30_000,
  );
  // The moment it is ready, not eventually: the keys were streamed in before.
  expect(await metric(c.url(i), /^dynamo_storage_keys\b/)).toBe(KEYS.length);
  // While it was not ready it coordinated nothing (503 not_ready), if it was seen at all.
  expect([...answers].filter((s) => s !== 503)).toEqual([]);
  for (const k of KEYS) {
    const read = await fetch(`${c.url(i)}/buckets/rb/keys/${k}?r=all`);
    expect(read.status, k).toBe(200);
    expect(await read.text()).toBe(`v-${k}`);
  }
}

describe('a wiped node is rebuilt before it serves', () => {
  let c: TestCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('gossip: reclaims its tokens and streams every range it replicates from all up replicas', async () => {
    c = await TestCluster.start(3, ['--gossip-interval-ms', '200'], { gossip: true });
    await load(c);
    const before = (await ringOf(c.url(0))).find((m) => m.id === 'n2')!.tokens;
    await wipeAndRestart(c, 1);
    await expectRebuiltBeforeServing(c, 1);
    const status = await statusOf(c.url(1));
    expect(status.state).toBe('up');
    // Rebuilding mode: every holder sends, not only the nodes that stood in for it.
    expect(status.stream?.mode).toBe('all');
    for (const i of [0, 1, 2]) {
      const members = await ringOf(c.url(i));
      expect(members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3']);
      expect(members.find((m) => m.id === 'n2')!.tokens).toEqual(before);
    }
  });

  it('static: pulls every key it replicates from the other members before it answers /ready', async () => {
    c = await TestCluster.start(3);
    await load(c);
    await wipeAndRestart(c, 2);
    await expectRebuiltBeforeServing(c, 2);
    const status = await statusOf(c.url(2));
    expect(status.state).toBe('up');
    expect(status.rebuild).toMatchObject({ state: 'done', keys: KEYS.length * 2, sources: ['n1', 'n2'] });
  });

  it('static: a new cluster, every member empty, rebuilds nothing', async () => {
    c = await TestCluster.start(3);
    const status = await statusOf(c.url(0));
    expect(status.rebuild).toMatchObject({ state: 'done', keys: 0, sources: [] });
  });
});
