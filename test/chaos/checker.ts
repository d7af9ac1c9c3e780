/**
 * The chaos checker: once faults are over and the cluster has converged, every acknowledged element of
 * every hot set, and every acknowledged blind write, must be readable through every node with r=all.
 */
import { readValues } from '../integration/harness.js';
import { BLIND_BUCKET, HOT_BUCKET, readSet, type SetWorkload } from './workload.js';

export interface CheckResult {
  /** Acknowledged adds missing from the read through at least one node. */
  lostAdds: number;
  /** Acknowledged blind writes whose value a read through some node did not return. */
  lostBlind: number;
  /** Elements found that no client ever sent. */
  unexpected: number;
  /** Siblings on the hot keys when read (concurrent adds not yet merged by a later write). */
  siblingsLeft: number;
  /** Reads that failed outright (no answer, 5xx). */
  readErrors: number;
  /** A few of the losses, for the report. */
  examples: string[];
}

/** The blind write's values (none when absent), or undefined when the read failed. */
async function blindValue(url: string, key: string): Promise<string[] | undefined> {
  const r = await readValues(url, BLIND_BUCKET, key, '?r=all');
  return r.status === 200 || r.status === 300 || r.status === 404 ? r.values : undefined;
}

export async function check(urls: string[], w: SetWorkload): Promise<CheckResult> {
  const out: CheckResult = {
    lostAdds: 0,
    lostBlind: 0,
    unexpected: 0,
    siblingsLeft: 0,
    readErrors: 0,
    examples: [],
  };
  for (const [key, acked] of w.acked) {
    const missing = new Set<string>();
    for (const [i, url] of urls.entries()) {
      let read: Awaited<ReturnType<typeof readSet>>;
      try {
        read = await readSet(url, HOT_BUCKET, key, '?r=all', 10_000);
      } catch {
        out.readErrors++;
        continue;
      }
      if (read.status !== 200 && read.status !== 300 && read.status !== 404) {
        out.readErrors++;
        continue;
      }
      if (i === 0) {
        out.siblingsLeft += Math.max(0, read.siblings - 1);
        for (const e of read.elements) if (!w.attemptedElements.has(e)) out.unexpected++;
      }
      for (const e of acked) if (!read.elements.has(e)) missing.add(e);
    }
    out.lostAdds += missing.size;
    for (const e of [...missing].slice(0, 3)) out.examples.push(`${key} lost ${e}`);
  }
  const keys = [...w.blind.keys()];
  for (let start = 0; start < keys.length; start += 16) {
    await Promise.all(
      keys.slice(start, start + 16).map(async (key, j) => {
        const url = urls[(start + j) % urls.length]!;
        let got: string[] | undefined;
        try {
          got = await blindValue(url, key);
        } catch {
          got = undefined;
        }
        if (got === undefined) out.readErrors++;
        else if (!got.includes(w.blind.get(key)!)) {
          out.lostBlind++;
          if (out.examples.length < 10)
            out.examples.push(`blind ${key} missing (read ${JSON.stringify(got)})`);
        }
      }),
    );
  }
  return out;
}
