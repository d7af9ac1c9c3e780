import { describe, expect, it } from 'vitest';
import type { KvClient, ReadOutcome } from '../../bench/client.js';
import {
  formatOpenLoopTable,
  formatSiblingTable,
  siblingDistribution,
  summarizePhase,
} from '../../bench/report.js';
import { runPhase } from '../../bench/runner.js';
import type { Operation } from '../../bench/workload.js';

/** A client whose reads of key k meet `values(k)` values and whose every call takes `serviceMs`. */
function fakeClient(values: (key: string) => number, serviceMs = 0): KvClient {
  const after = <T>(value: T) =>
    new Promise<T>((resolve) =>
      serviceMs > 0 ? setTimeout(() => resolve(value), serviceMs) : resolve(value),
    );
  return {
    get: (_bucket, key): Promise<ReadOutcome> => {
      const n = values(key);
      return after({ status: n > 1 ? 300 : 200, values: n });
    },
    put: () => after(204),
    close: async () => {},
  };
}

const reads = (index: number): Operation => ({ type: 'read', key: String(index % 10) });
const signal = new AbortController().signal;

describe('bench runner', () => {
  it('counts the values each read met, and summarizes them as shares of 1, 2, 3-4 and 5+', async () => {
    // Keys 0..9: key k meets k+1 values, so each of 100 reads meets 1..10 values, 10 reads each.
    const client = fakeClient((key) => Number(key) + 1);
    const result = await runPhase(client, {
      name: 'c',
      bucket: 'b',
      concurrency: 4,
      operations: 100,
      nextOperation: reads,
      signal,
    });
    const summary = summarizePhase(result);
    expect(summary.siblings).toEqual({
      reads: 100,
      one: 10,
      two: 10,
      threeToFour: 20,
      fivePlus: 60,
      max: 10,
      mean: 5.5,
    });
    expect(summary.overall.siblingReads).toBe(90);
    expect(formatSiblingTable([summary])).toMatch(/c\s+100\s+10\.0%\s+10\.0%\s+20\.0%\s+60\.0%\s+10\s+5\.50/);
    expect(siblingDistribution([])).toMatchObject({ reads: 0, max: 0, mean: 0 });
  });

  it('open loop: sends at the offered rate, not faster, however fast the server answers', async () => {
    const client = fakeClient(() => 1);
    const result = await runPhase(client, {
      name: 'c@50%',
      bucket: 'b',
      concurrency: 8,
      operations: 50,
      rate: 250, // one every 4 ms: 50 take about 196 ms
      nextOperation: reads,
      signal,
    });
    const summary = summarizePhase(result, 250);
    expect(summary.overall.count).toBe(50);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(190);
    expect(summary.offeredOpsPerSec).toBe(250);
  });

  it('open loop: an operation waiting for a busy client is timed from when it was due', async () => {
    // One client, 20 ms per call, operations due every 5 ms: each waits longer than the one before, so
    // the slowest is far above the 20 ms any call takes (a closed-loop timer would say 20 ms for all).
    const client = fakeClient(() => 1, 20);
    const closed = summarizePhase(
      await runPhase(client, {
        name: 'c',
        bucket: 'b',
        concurrency: 1,
        operations: 10,
        nextOperation: reads,
        signal,
      }),
    );
    const open = summarizePhase(
      await runPhase(client, {
        name: 'c@50%',
        bucket: 'b',
        concurrency: 1,
        operations: 10,
        rate: 200,
        nextOperation: reads,
        signal,
      }),
      200,
    );
    expect(closed.overall.latencyMs.max).toBeLessThan(100);
    // The 10th is due at 45 ms and done after 10 calls of 20 ms: about 155 ms late.
    expect(open.overall.latencyMs.max).toBeGreaterThan(120);
    expect(formatOpenLoopTable([closed, open])).toMatch(/c@50%\s+\d+\s+200\s/);
  });

  it('refuses a rate that is not a positive number', async () => {
    const plan = { name: 'x', bucket: 'b', concurrency: 1, operations: 1, nextOperation: reads, signal };
    await expect(
      runPhase(
        fakeClient(() => 1),
        { ...plan, rate: 0 },
      ),
    ).rejects.toThrow(/rate/);
  });
});
